"""Audit a benchmark's sentences: does each one ground its target? (The ChatTracker paper found over
10% of VL-tracking sentences ambiguous or wrong; this finds which.)

Per sequence the sentence is grounded, as a language start would, on frame 1 and on a few sampled
frames with a visible target. A frame is a hit when the best box overlaps the ground truth; otherwise
the sentence either lands on a distractor (another candidate is the target, but ranks lower) or misses
the target altogether (no candidate overlaps it: wrong class, or a target the detector cannot see). For
a flagged sentence RPO, started from the ground-truth box and the sentence, proposes a rewrite, and the
rewrite is grounded again to say whether it finds the target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from chattracker.language_start import LanguageStart, LanguageStartConfig, NoTargetFound, find_target
from chattracker.rpo import RPOConfig, run_rpo
from chattracker.types import Box, Frame

logger = logging.getLogger(__name__)

VERDICTS = ("hit", "distractor", "miss", "nothing")


@dataclass
class FrameAudit:
    """One grounded frame: what the sentence's best box was and what became of the target."""

    frame: int  # 1-based
    verdict: str  # one of VERDICTS
    best_iou: float  # IoU of the best box with the ground truth
    target_rank: int | None  # rank of the first candidate overlapping the target (1 = best), None: none does
    best: dict[str, Any] | None  # the best candidate (JSON)
    start: LanguageStart | None = field(default=None, repr=False)
    at_target: str = ""  # what the detector calls the object at the target, on frames that are no hit

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "verdict": self.verdict, "best_iou": round(self.best_iou, 4),
                "target_rank": self.target_rank, "best": self.best, "detected_at_target": self.at_target or None,
                "candidates": [c.to_json() for c in self.start.candidates] if self.start else []}


@dataclass
class SequenceAudit:
    """A sentence's verdict over its sampled frames, the reason, and RPO's rewrite when flagged."""

    name: str
    sentence: str
    frames: list[FrameAudit]
    flagged: bool
    reason: str
    rewrite: str = ""
    rewrite_iou: float | None = None  # the rewrite's best box vs the ground truth on frame 1
    rewrite_grounds: bool | None = None

    @property
    def hits(self) -> int:
        return sum(f.verdict == "hit" for f in self.frames)

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.name, "sentence": self.sentence, "flagged": self.flagged, "reason": self.reason,
                "hits": self.hits, "frames_checked": len(self.frames),
                "rewrite": self.rewrite or None, "rewrite_iou": None if self.rewrite_iou is None else round(self.rewrite_iou, 4),
                "rewrite_grounds": self.rewrite_grounds, "frames": [f.to_json() for f in self.frames]}


def sample_frames(truth: np.ndarray, absent: np.ndarray, count: int) -> list[int]:
    """Frame 1 and ``count - 1`` more, evenly spread over the frames with a visible target (0-based)."""
    visible = [i for i in range(len(truth)) if np.isfinite(truth[i]).all() and truth[i][2] > 0 and truth[i][3] > 0
               and not (i < len(absent) and absent[i])]
    rest = [i for i in visible if i > 0]
    if count <= 1 or not rest:
        return [0]
    n = min(count - 1, len(rest))
    return [0, *dict.fromkeys(rest[int(round((k + 1) * (len(rest) - 1) / n))] for k in range(n))]


def audit_frame(image: Frame, later: Frame | None, index: int, sentence: str, truth: Box, grounder: Any,
                config: LanguageStartConfig, min_iou: float) -> FrameAudit:
    try:
        start = find_target(image, sentence, grounder, config, None, later, require_credible=False)
    except NoTargetFound:
        return FrameAudit(index + 1, "nothing", 0.0, None, None, None, detected_at(grounder, image, truth, config.zoom_grid))
    ious = [c.box.iou(truth) for c in start.candidates]
    rank = next((r for r, iou in enumerate(ious, start=1) if iou >= min_iou), None)
    verdict = "hit" if rank == 1 else ("distractor" if rank is not None else "miss")
    at_target = detected_at(grounder, image, truth, config.zoom_grid) if verdict != "hit" else ""
    return FrameAudit(index + 1, verdict, ious[0], rank, start.target.to_json(), start, at_target)


def detected_at(grounder: Any, image: Frame, truth: Box, grid: int) -> str:
    """The detection overlapping the target most, as "class score (IoU x)", or "nothing"."""
    zoomed = getattr(grounder, "zoomed_detections", None)
    if not callable(zoomed):
        return "unknown (the grounder lists no detections)"
    found = zoomed(image, grid)
    best, label = 0.0, "nothing"
    for box, class_id, score in zip(found.boxes, found.class_ids, found.scores):
        iou = Box.from_any(box).iou(truth)
        if iou > best:
            best, label = iou, f"{grounder.classes[class_id]} {score:.2f} (IoU {iou:.2f})"
    return label if best >= 0.3 else "nothing"


def reason_of(frames: list[FrameAudit], head: str | None, sentence_classes: tuple[str, ...]) -> str:
    """Why a sentence was (or was nearly) flagged: the first frame that is no hit, in words."""
    hits = sum(f.verdict == "hit" for f in frames)
    if hits == len(frames):
        return "grounds the target on every checked frame"
    bad = frames[0] if frames[0].verdict != "hit" else next(f for f in frames if f.verdict != "hit")
    where = f"hits {hits}/{len(frames)}; frame {bad.frame}"
    named = "/".join(sentence_classes)
    if bad.verdict == "distractor":
        return (f"{where}: the best box is another object (IoU {bad.best_iou:.2f} with the target, score "
                f"{bad.best['score']:.2f}); the target ranks #{bad.target_rank}: the sentence fits a distractor better")
    if bad.verdict == "miss":
        return (f"{where}: no candidate of the sentence ({named or head}) is the target; the detector sees "
                f"{bad.at_target} there: wrong class, or an object the detector cannot see")
    if not named:
        return f"{where}: the sentence names no object the detector knows ({head!r}); it sees {bad.at_target} at the target"
    return f"{where}: nothing of class {named} found; the detector sees {bad.at_target} at the target"


def audit_sequence(name: str, sentence: str, read_frame: Callable[[int], Frame], truth: np.ndarray,
                   absent: np.ndarray, grounder: Any, describer: Any, config: LanguageStartConfig,
                   frames: int = 4, min_iou: float = 0.5, rpo: RPOConfig = RPOConfig()) -> SequenceAudit:
    """Ground ``sentence`` on sampled frames of one sequence and judge it (``read_frame(i)``: 0-based)."""
    from chattracker.grounding.phrases import parse_phrase

    checked = []
    for index in sample_frames(truth, absent, frames):
        later_index = index + config.motion_gap
        later = read_frame(later_index) if config.motion_gap and later_index < len(truth) else None
        checked.append(audit_frame(read_frame(index), later, index, sentence, Box.from_any(truth[index]), grounder,
                                   config, min_iou))
    first_image = read_frame(0)
    target = Box.from_any(truth[0])
    hits = sum(f.verdict == "hit" for f in checked)
    # Frame 1 is where a language start must succeed; later frames guard against a sentence that fits
    # frame 1 by chance (fewer than half hit: flagged).
    flagged = checked[0].verdict != "hit" or hits * 2 < len(checked)
    parsed = parse_phrase(sentence)
    audit = SequenceAudit(name, sentence, checked, flagged, reason_of(checked, parsed.head, parsed.classes))
    if flagged and describer is not None:
        result = run_rpo(first_image, target, describer, grounder, rpo, initial_text=sentence)
        audit.rewrite = result.description.foreground
        if audit.rewrite and audit.rewrite != sentence:
            check = audit_frame(first_image, None, 0, audit.rewrite, target, grounder, config, min_iou)
            audit.rewrite_iou, audit.rewrite_grounds = check.best_iou, check.verdict == "hit"
        elif audit.rewrite:
            audit.rewrite_iou, audit.rewrite_grounds = checked[0].best_iou, False
    return audit
