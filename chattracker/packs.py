"""Description packs: the RPO outcome of every sequence of a benchmark, one JSON file per sequence.

``<pack>/<sequence>.json`` holds the foreground and background descriptions, every round, the whole trace, and the
hashes of the model and prompts that produced them; it is written atomically and last, so a sequence counts as
described exactly when its JSON exists. Beside it, one-line text files in the forms VL trackers read:
``init_nlp/<sequence>.txt`` and ``language/<sequence>/language.txt`` (the foreground description).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from chattracker.errors import ConfigError, InputError
from chattracker.results import atomic_write_text, write_json

PACK_VERSION = 1


def pack_path(pack: str | Path, sequence: str) -> Path:
    return Path(pack) / f"{sequence}.json"


def digest(value: Any) -> str:
    """sha256 of a JSON value (sorted keys): what identifies a model, grounder or config in a pack."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def build_pack(sequence: str, dataset: str, frame: str, result_json: dict[str, Any]) -> dict[str, Any]:
    """The JSON of one sequence from ``RPOResult.to_json()`` (trace included)."""
    trace = result_json.get("trace", {})
    describer = trace.get("describer")
    prompts = describer.get("prompts") if isinstance(describer, dict) else None
    return {"version": PACK_VERSION, "sequence": sequence, "dataset": dataset, "frame": frame,
            "box": trace.get("box"), "initial_text": trace.get("initial_text"),
            "foreground": result_json["description"]["foreground"],
            "background": result_json["description"]["background"], "top1_iou": result_json["top1_iou"],
            "ok": bool(result_json["description"]["foreground"]), "selected_round": trace.get("selected_round"),
            "rounds": trace.get("rounds", []), "model": describer, "model_hash": digest(describer),
            "prompt_hashes": prompts, "grounder_hash": digest(trace.get("grounder")),
            "config_hash": digest(trace.get("config")), "trace": trace}


def write_pack(pack_dir: str | Path, pack: dict[str, Any]) -> Path:
    """Text files first, the JSON last (atomic each): a killed run leaves no sequence half-described."""
    root, name = Path(pack_dir), pack["sequence"]
    try:
        atomic_write_text(root / "init_nlp" / f"{name}.txt", pack["foreground"] + "\n")
        atomic_write_text(root / "language" / name / "language.txt", pack["foreground"] + "\n")
        path = pack_path(root, name)
        write_json(path, pack)
    except OSError as error:
        raise InputError(f"cannot write the description pack of {name} in {root}: {error.strerror or error}") from None
    return path


def read_pack(pack_dir: str | Path, sequence: str) -> dict[str, Any] | None:
    """The pack of ``sequence``, None when absent; a damaged or foreign file is a clear error."""
    path = pack_path(pack_dir, sequence)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"description pack {path} is unreadable ({error})") from None
    if not isinstance(data, dict) or data.get("version") != PACK_VERSION or data.get("sequence") != sequence \
            or not isinstance(data.get("foreground"), str):
        raise InputError(f"{path} is not a description pack of {sequence} (version {PACK_VERSION})")
    return data


def descriptions_for(pack_dir: str | Path, sequences: list[str]) -> dict[str, tuple[str, str]]:
    """(foreground, background) per sequence; any sequence without a usable pack is one clear error."""
    if not Path(pack_dir).is_dir():
        raise InputError(f"description pack folder {pack_dir} does not exist")
    out, missing = {}, []
    for name in sequences:
        data = read_pack(pack_dir, name)
        if data is None or not data["foreground"].strip():
            missing.append(name)
        else:
            out[name] = (data["foreground"], data.get("background") or "")
    if missing:
        raise InputError(f"{pack_dir} has no usable description for {len(missing)} sequence(s), e.g. "
                         f"{', '.join(missing[:3])}; run `chattracker describe --dataset ... --out {pack_dir}`")
    return out


def build_described_tracker(spec: str, foreground: str, background: str):
    """The tracker of YAML config ``spec`` (an enhanced one) using these descriptions instead of running RPO."""
    from chattracker.builder import ENHANCED, base_name_of, is_config_path
    from chattracker.config import TrackerConfig, load_tracker_config

    if spec.endswith(ENHANCED) and not is_config_path(spec):
        from chattracker_configs import default_fusion_settings

        config = TrackerConfig(base_name_of(spec), enhance=True, chattracker=default_fusion_settings(), source=spec)
        config.chattracker = {**config.chattracker, "foreground": foreground, "background": background}
        return config.build()
    if not is_config_path(spec):
        raise ConfigError(f"--descriptions needs a ChatTracker tracker (--enhance, NAME+chattracker, or a YAML "
                          f"with enhance: true), not {spec!r}")
    config = load_tracker_config(spec)
    if not config.enhance:
        raise ConfigError(f"{spec}: --descriptions needs enhance: true (a plain tracker reads no descriptions)")
    config.chattracker = {**(config.chattracker or {}), "foreground": foreground, "background": background}
    return config.build()
