"""What one tracking run used and decided, for the summary line and ``track.json``: the components
that ran, where each weight file came from, the descriptions, the per-frame decisions and events.

Read from the tracker's public state (a ChatTracker has ``base``, ``describer``, ``grounder``,
``descriptions`` and ``events``; a plain tracker has none of them), so it works for any tracker.
"""

from __future__ import annotations

import argparse
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from chattracker.errors import InputError
from chattracker.tracking import FrameRecord
from chattracker.types import Tracker
from chattracker.weights import WeightLookup

DEFAULT_BASE = "nanotrack_v2"
# Events of the wrapper that change what the base tracker follows.
CORRECTIONS = ("reinitialize", "refresh", "recover", "redetect")
# Per-frame keys of the wrapper's info dict worth keeping in track.json (drawing data is not).
DECISION_KEYS = ("decision", "grounding", "base_box", "base_score", "candidates")


def add_choice_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tracker``/``--plain``/``--enhance``: ChatTracker around NanoTrack v2 unless told otherwise."""
    parser.add_argument("--tracker", default=None,
                        help=f"base tracker name; alone unless --enhance (default: ChatTracker around {DEFAULT_BASE})")
    parser.add_argument("--plain", action="store_true", help=f"run the base tracker alone ({DEFAULT_BASE} by default)")
    parser.add_argument("--enhance", action="store_true", help="wrap the named --tracker with ChatTracker")


def choose(tracker: str | None, plain: bool, enhance: bool) -> tuple[str, bool]:
    """(base tracker name, wrap with ChatTracker) from the command-line flags."""
    if plain and enhance:
        raise InputError("--plain and --enhance contradict each other")
    name = DEFAULT_BASE if tracker in (None, "auto") else tracker
    return name, enhance or (tracker in (None, "auto") and not plain)


@dataclass
class RunRecord:
    """Weights resolved and RPO results produced while the block of ``recording()`` ran."""

    weights: dict[str, WeightLookup] = field(default_factory=dict)
    rpo: list[Any] = field(default_factory=list)


@contextmanager
def recording() -> Iterator[RunRecord]:
    from chattracker import rpo, weights

    record = RunRecord()
    with ExitStack() as stack:
        record.weights = stack.enter_context(weights.recording())
        record.rpo = stack.enter_context(rpo.recording())
        yield record


def _name(component: Any) -> str:
    return str(getattr(component, "name", None) or type(component).__name__)


def components(tracker: Tracker) -> dict[str, str]:
    """Role -> name of every part of ``tracker`` that runs (one entry for a plain tracker)."""
    if not hasattr(tracker, "base"):
        return {"tracker": _name(tracker)}
    parts = {"base": _name(tracker.base)}
    describer = getattr(tracker, "describer", None)
    parts["describer"] = _name(describer) if describer is not None else "none (description given in settings)"
    parts["grounder"] = _name(getattr(tracker, "grounder", None))
    appearance = next((getattr(tracker, key) for key in ("appearance", "embedder", "memory") if hasattr(tracker, key)), None)
    if appearance is not None:
        parts["appearance"] = _name(getattr(appearance, "model", None) or appearance)
    if getattr(tracker, "redetector", None) is not None:
        # Its weights are NanoTrack v2's backbone and head, listed with the base when it is NanoTrack.
        parts["re-detector"] = "nanotrack_v2 template (frame 1)"
    return parts


def weight_sources(record: RunRecord) -> dict[str, dict[str, str]]:
    return {name: {"source": lookup.source, "path": str(lookup.path)} for name, lookup in sorted(record.weights.items())}


def descriptions(tracker: Tracker) -> list[dict[str, Any]]:
    """The first-frame description and every re-description with its frame (1-based)."""
    found = list(getattr(tracker, "descriptions", []) or [])
    if not found:
        return []
    first = found[0]
    out = [{"frame": 1, "foreground": first.foreground, "background": first.background}]
    for event in getattr(tracker, "events", []) or []:
        if event.get("event") == "redescribe":
            out.append({"frame": event.get("frame"), "foreground": event.get("foreground"),
                        "background": event.get("background")})
    return out


def corrections(tracker: Tracker) -> Counter:
    return Counter(e.get("event") for e in getattr(tracker, "events", []) or [] if e.get("event") in CORRECTIONS)


def frame_json(record: FrameRecord) -> dict[str, Any]:
    """One frame of track.json: box, score, time and, for a wrapper, what it decided and why."""
    return {**record.to_json(), **{key: record.info[key] for key in DECISION_KEYS if key in record.info}}


def absent_spans(records: list[FrameRecord]) -> list[dict[str, Any]]:
    """One ``absent`` event per run of frames the tracker reported without a box (1-based, inclusive)."""
    spans: list[dict[str, Any]] = []
    for record in records:
        if record.box is not None:
            continue
        frame = record.index + 1
        if spans and spans[-1]["last"] == frame - 1:
            spans[-1]["last"] = frame
        else:
            spans.append({"frame": frame, "event": "absent", "last": frame})
    return spans


def language_json(tracker: Tracker, record: RunRecord, frames: list[FrameRecord]) -> dict[str, Any]:
    """The run's components, weights, descriptions and events (the language side of track.json):
    the wrapper's own events and the spans it reported the target absent, in frame order."""
    events = sorted([*(getattr(tracker, "events", []) or []), *absent_spans(frames)], key=lambda e: e.get("frame", 0))
    return {"components": components(tracker), "weights": weight_sources(record),
            "descriptions": descriptions(tracker), "events": events,
            "corrections": sum(corrections(tracker).values())}


def rpo_trace_json(record: RunRecord) -> list[dict[str, Any]]:
    return [result.to_json() for result in record.rpo]


def summary_lines(tracker: Tracker, record: RunRecord) -> list[str]:
    """Components with their weight sources; for a wrapper also the descriptions and corrections."""
    by_prefix = {"nanotrack": "base", "yolox": "grounder"}
    owned: dict[str, list[str]] = {}
    for name, lookup in sorted(record.weights.items()):
        role = next((r for prefix, r in by_prefix.items() if name.startswith(prefix)), "appearance")
        owned.setdefault(role, []).append(f"{name} {lookup.source}")
    parts = []
    for role, name in components(tracker).items():
        role_weights = owned.pop("base" if role == "tracker" else role, [])
        parts.append(f"{role} {name}" + (f" ({', '.join(role_weights)})" if role_weights else ""))
    parts += [f"weights {', '.join(rest)}" for rest in owned.values()]
    lines = ["components: " + "; ".join(parts)]
    texts = descriptions(tracker)
    if texts:
        shown = "; ".join(f"frame {d['frame']}: {d['foreground']!r}" + (f" / background {d['background']!r}"
                                                                         if d.get("background") else "")
                          for d in texts)
        counts = corrections(tracker)
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        lines.append(f"descriptions: {shown}; corrections: {sum(counts.values())}" + (f" ({detail})" if detail else ""))
    return lines
