"""Stream a transformers MoE checkpoint into an expert store, one expert at a time.

Handles the two layouts found on disk: fused 3-D tensors (``experts.gate_up_proj`` / ``experts.down_proj``, possibly
stored transposed, as Qwen3-VL-MoE does) and one module per expert (``experts.{j}.gate_proj|up_proj|down_proj`` or
Mixtral's ``w1|w3|w2``). Tensors are sliced through ``safe_open`` so only one expert is materialised at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections import defaultdict
from pathlib import Path

import psutil
import torch
from safetensors import safe_open
from tqdm import tqdm

from chattracker.offload.quant import QuantSpec, int4_layout_fingerprint, quantize
from chattracker.offload.store import FORMAT_VERSION, MANIFEST, ExpertStoreError, expert_file, serialize
from chattracker.outputs import publish_folder

log = logging.getLogger(__name__)

FUSED = re.compile(r"^(?P<prefix>.*\.layers\.(?P<layer>\d+)\.(?:mlp|block_sparse_moe))\.experts\.(?P<name>gate_up_proj|down_proj)$")
SPLIT = re.compile(r"^(?P<prefix>.*\.layers\.(?P<layer>\d+)\.(?:mlp|block_sparse_moe))\.experts\.(?P<expert>\d+)\."
                   r"(?P<name>gate_proj|up_proj|down_proj|w1|w3|w2)\.weight$")
_SPLIT_ROLE = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"}


def checkpoint_files(model_dir: Path) -> dict[str, Path]:
    """Map every tensor name of a safetensors checkpoint to its file."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {key: model_dir / name for key, name in weight_map.items()}
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExpertStoreError(f"no safetensors checkpoint in {model_dir}")
    out = {}
    for path in files:
        with safe_open(path, "pt") as handle:
            out.update({key: path for key in handle.keys()})
    return out


def is_expert_key(key: str) -> bool:
    return bool(FUSED.match(key) or SPLIT.match(key))


def moe_dimensions(config) -> tuple[int, int, int, int]:
    """(hidden, expert FFN width, number of experts, top-k) of a transformers MoE text config."""
    text = config.get_text_config()
    experts = getattr(text, "num_experts", None) or getattr(text, "num_local_experts", None)
    width = getattr(text, "moe_intermediate_size", None) or text.intermediate_size
    if not experts:
        raise ExpertStoreError(f"{type(config).__name__} has no num_experts / num_local_experts: not an MoE model")
    return text.hidden_size, width, experts, text.num_experts_per_tok


class _ExpertReader:
    """Yields one expert's [2I, H] and [H, I] matrices from whichever layout the checkpoint uses."""

    def __init__(self, files: dict[str, Path], hidden: int, width: int) -> None:
        self.files, self.hidden, self.width = files, hidden, width
        self.fused: dict[int, dict[str, str]] = defaultdict(dict)
        self.split: dict[int, dict[int, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
        for key in files:
            if match := FUSED.match(key):
                self.fused[int(match["layer"])][match["name"]] = key
            elif match := SPLIT.match(key):
                self.split[int(match["layer"])][int(match["expert"])][_SPLIT_ROLE[match["name"]]] = key
        self._handles: dict[Path, object] = {}

    @property
    def layers(self) -> list[int]:
        return sorted(set(self.fused) | set(self.split))

    def _slice(self, key: str, index: int | None = None) -> torch.Tensor:
        path = self.files[key]
        if path not in self._handles:
            # one shard mapped at a time: pages of a mapped file count in RSS until it is closed
            self._handles.clear()
            self._handles[path] = safe_open(path, "pt")
        sliced = self._handles[path].get_slice(key)
        return (sliced[index] if index is not None else sliced[:]).to(torch.float32)

    def expert(self, layer: int, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, width = self.hidden, self.width
        if layer in self.fused:
            keys = self.fused[layer]
            gate_up, down = self._slice(keys["gate_up_proj"], expert), self._slice(keys["down_proj"], expert)
            # Hub Qwen3-VL-MoE files hold [E, H, 2I] / [E, I, H]; transformers' own save writes [E, 2I, H] / [E, H, I].
            # Whichever matrix is not square-ambiguous tells which one this file uses.
            transposed = (tuple(down.shape) == (width, hidden) if hidden != width
                          else tuple(gate_up.shape) == (hidden, 2 * width))
            if transposed:
                gate_up, down = gate_up.t(), down.t()
        else:
            keys = self.split[layer].get(expert, {})
            missing = {"gate", "up", "down"} - set(keys)
            if missing:
                raise ExpertStoreError(f"checkpoint lacks {sorted(missing)} weights of layer {layer} expert {expert}")
            gate_up = torch.cat((self._slice(keys["gate"]), self._slice(keys["up"])), dim=0)
            down = self._slice(keys["down"])
        if tuple(gate_up.shape) != (2 * width, hidden) or tuple(down.shape) != (hidden, width):
            raise ExpertStoreError(f"layer {layer} expert {expert}: shapes {tuple(gate_up.shape)}, {tuple(down.shape)} "
                                   f"do not match the config's hidden {hidden} / expert width {width}")
        return gate_up.contiguous(), down.contiguous()

    def close(self) -> None:
        self._handles.clear()


def _table_json(tables) -> dict:
    nested: dict[str, dict] = defaultdict(dict)
    for name, entry in tables.items():
        matrix, tensor = name.split(".", 1)
        nested[matrix][tensor] = {"offset": entry.offset, "dtype": entry.dtype, "shape": list(entry.shape)}
    return nested


def _quant_json(spec: QuantSpec) -> dict:
    return {"bits": spec.bits, "group": spec.group, "scheme": "asymmetric min/max per group",
            "int4_layout": int4_layout_fingerprint() if spec.bits == 4 else None}


class _TierWriter:
    """Writes one precision of every expert (atomically, file by file) and collects its manifest section."""

    def __init__(self, store_dir: Path, spec: QuantSpec, cold: bool) -> None:
        self.store_dir, self.spec, self.cold = store_dir, spec, cold
        self.entries: dict[str, dict] = {}
        self.tables, self.expert_bytes = None, None

    def write(self, layer: int, expert: int, gate_up: torch.Tensor, down: torch.Tensor) -> None:
        flat = {f"gate_up.{k}": v for k, v in quantize(gate_up, self.spec).items()}
        flat.update({f"down.{k}": v for k, v in quantize(down, self.spec).items()})
        payload, table = serialize(flat)
        if self.tables is None:
            self.tables, self.expert_bytes = table, len(payload)
        path = self.store_dir / expert_file(layer, expert, self.cold)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        self.entries[f"{layer}.{expert}"] = {"bytes": len(payload), "crc32": zlib.crc32(payload)}

    def section(self) -> dict:
        return {"quantization": _quant_json(self.spec), "tables": _table_json(self.tables),
                "expert_bytes": self.expert_bytes, "experts": self.entries}


def convert_checkpoint(model_dir: str | os.PathLike, store_dir: str | os.PathLike, bits: int = 4,
                       group_size: int | None = None, cold_bits: int | None = None,
                       cold_group_size: int | None = None) -> Path:
    """Quantize every expert of ``model_dir`` into ``store_dir``; returns the manifest path.

    ``cold_bits`` (e.g. 2) also writes every expert at that lower precision into the store's cold tier, which the
    runtime's ``cold_tail`` option reads for the least-demanded experts of a prefill."""
    from transformers import AutoConfig

    model_dir, store_dir = Path(model_dir), Path(store_dir)
    _check_target(store_dir)
    if not (model_dir / "config.json").is_file():
        raise ExpertStoreError(f"{model_dir} is not a transformers model folder (no config.json)")
    config = AutoConfig.from_pretrained(model_dir)
    hidden, width, num_experts, top_k = moe_dimensions(config)
    try:
        spec = QuantSpec.make(bits, group_size)
        cold_spec = QuantSpec.make(cold_bits, cold_group_size) if cold_bits is not None else None
    except ValueError as error:
        raise ExpertStoreError(str(error)) from None
    if cold_spec is not None and cold_spec.bits >= spec.bits:
        raise ExpertStoreError(f"the cold tier must have fewer bits than the store ({cold_spec.bits} >= {spec.bits})")
    for tier_spec in filter(None, (spec, cold_spec)):
        for size in (hidden, width):
            if size % tier_spec.group or (tier_spec.bits == 2 and size % 4):
                raise ExpertStoreError(f"group size {tier_spec.group} does not divide the expert dimensions "
                                       f"({hidden}, {width})")
    reader = _ExpertReader(checkpoint_files(model_dir), hidden, width)
    layers = reader.layers
    if not layers:
        raise ExpertStoreError(f"no expert tensors found in {model_dir}")
    staging = _staging_folder(store_dir)
    try:
        path = _write_store(staging, config, reader, layers, num_experts, spec, cold_spec, (hidden, width, top_k))
        publish_folder(staging, store_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return store_dir / path.name


def _check_target(store_dir: Path) -> None:
    """Refuse, before any work, a target that is a file or a non-empty folder that is not a store."""
    if store_dir.exists() and not store_dir.is_dir():
        raise ExpertStoreError(f"{store_dir} is a file, not a store folder")
    if store_dir.is_dir() and any(store_dir.iterdir()) and not (store_dir / MANIFEST).is_file():
        raise ExpertStoreError(f"{store_dir} is not empty and not an expert store (no {MANIFEST}); refusing to "
                               "replace it: choose an empty or new folder")
    try:
        store_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExpertStoreError(f"cannot write into {store_dir.parent}: {(error.strerror or str(error)).lower()}") from None
    if not os.access(store_dir.parent, os.W_OK):
        raise ExpertStoreError(f"cannot write into {store_dir.parent}: permission denied")


def _staging_folder(store_dir: Path) -> Path:
    """Where a conversion is written: beside ``store_dir``, swapped in only once complete, so a conversion that
    fails part-way leaves the previous store whole."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{store_dir.name}.converting-", dir=store_dir.parent))
    except OSError as error:
        raise ExpertStoreError(f"cannot write into {store_dir.parent}: {(error.strerror or str(error)).lower()}") from None


def _write_store(store_dir: Path, config, reader: "_ExpertReader", layers: list[int], num_experts: int,
                 spec: QuantSpec, cold_spec: QuantSpec | None, dims: tuple[int, int, int]) -> Path:
    """Quantize every expert into ``store_dir`` (a fresh folder) and write the manifest last."""
    hidden, width, top_k = dims
    process = psutil.Process()
    peak_rss = baseline_rss = process.memory_info().rss
    writers = [_TierWriter(store_dir, spec, cold=False)]
    if cold_spec is not None:
        writers.append(_TierWriter(store_dir, cold_spec, cold=True))
    total = len(layers) * num_experts
    with tqdm(total=total, desc="quantizing experts", unit="expert") as progress:
        for layer in layers:
            for expert in range(num_experts):
                gate_up, down = reader.expert(layer, expert)
                for writer in writers:
                    writer.write(layer, expert, gate_up, down)
                if len(writers) > 1 and writers[1].expert_bytes > writers[0].expert_bytes:
                    # cold loads go into main-size cache slots; known from the first expert, so stop before the rest
                    raise ExpertStoreError(f"cold tier experts ({writers[1].expert_bytes} bytes) are larger than the "
                                           f"store's ({writers[0].expert_bytes} bytes); use fewer cold bits or a "
                                           "larger cold group")
                peak_rss = max(peak_rss, process.memory_info().rss)
                progress.update()
    reader.close()
    main = writers[0].section()
    expert_bytes = main["expert_bytes"]
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_type": config.model_type,
        "architectures": getattr(config, "architectures", None),
        "hidden_size": hidden, "expert_width": width, "num_experts": num_experts, "top_k": top_k,
        "moe_layers": layers,
        "shapes": {"gate_up": [2 * width, hidden], "down": [hidden, width]},
        **main,
        "cold": writers[1].section() if cold_spec is not None else None,
        "convert": {"peak_rss_bytes": peak_rss, "rss_before_bytes": baseline_rss, "peak_rss_rusage_bytes": _rusage_peak()},
    }
    path = store_dir / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    log.info("wrote %d experts (%d bytes each%s) to %s; peak RSS %.1f MiB", total, expert_bytes,
             f", cold tier {writers[1].expert_bytes} bytes each" if cold_spec is not None else "", store_dir,
             peak_rss / 2**20)
    return path


def _rusage_peak() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
