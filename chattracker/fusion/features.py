"""Step 3b: what the pipeline measured about each candidate, as one row of numbers for the learned score.

The columns are the measurements the fusion module already makes (appearance against the memory and the
known distractors, the finding score, the motion prior, background overlap, colour, size against the
remembered size) plus the round's context (the base tracker's confidence, whether it is a graded score)
and the tracklet's history. Every column is base-agnostic: the base tracker enters only through its
score and whether that score grades confidence (NanoTrack) or flags success (CSRT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chattracker.fusion.candidates import REDETECT, Candidate

FEATURES = (
    "round_confidence",   # the base's score this round, on every candidate (context)
    "graded",             # 1: the base's score grades confidence; 0: a success flag (CSRT)
    "embedded",           # the candidate has an appearance embedding
    "appearance",         # calibrated similarity to the remembered target (0 background, 1 the target)
    "appearance_margin",  # ... minus the best other candidate's
    "distractor",         # calibrated similarity to the known distractors
    "grounding",          # the finding score (detector or re-detector; the base: its confirming detection's)
    "redetect",           # found by the template re-detector alone
    "motion",             # exp(-distance to the motion prior)
    "background",         # IoU with the best background proposal
    "colour",             # share of the described colour (0 when there are no usable colour words)
    "colour_known",       # the description names a colour the target showed on frame 1
    "log_size",           # |log(area / remembered area)|
    "log_aspect",         # |log(aspect / remembered aspect)|
    "inside_base",        # lies inside a much larger base box (a box grown over the target)
    "persistent",         # the tracklet was seen the round before too
    "age",                # rounds since the tracklet was first seen (log1p)
)
# Nothing says which candidate is the base tracker's box: a first run that had "is the base box", its
# score and the IoU with it learned to trust whichever object the base follows, so after a switch the new
# object won every round and no switch was ever undone (26 sequences, leave-one-out: 6 switches, 0 undone).
# The base's preference comes from the path instead: staying on a tracklet is free, leaving it costs.
# (Nor the share of its rounds a tracklet was chosen: in the oracle runs the model is also fitted on,
# that share is the ground truth itself.)


@dataclass
class RoundContext:
    """What a round knows besides the candidates themselves."""

    base_score: float | None
    graded: bool
    remembered_size: tuple[float, float] | None


def _log_ratio(value: float, reference: float) -> float:
    return abs(math.log(max(value, 1e-6) / max(reference, 1e-6)))


def candidate_features(candidates: list[Candidate], context: RoundContext,
                       histories: dict[int, tuple[int, float]]) -> np.ndarray:
    """One row per candidate, columns in ``FEATURES`` order. ``histories``: tracklet identity ->
    (age in rounds, share of its rounds as the target; the share is not a feature)."""
    score = 0.0 if context.base_score is None else float(context.base_score)
    rows = []
    for index, c in enumerate(candidates):
        others = [o.appearance for k, o in enumerate(candidates) if k != index and o.embedding is not None]
        size = aspect = 0.0
        if context.remembered_size is not None:
            w, h = context.remembered_size
            size = _log_ratio(c.box.area, w * h)
            aspect = _log_ratio(c.box.w / max(c.box.h, 1e-6), w / max(h, 1e-6))
        age, _ = histories.get(c.identity, (0, 0.0))
        rows.append([
            score, float(context.graded), float(c.embedding is not None), c.appearance,
            c.appearance - max(others, default=0.0), c.distractor, c.grounding, float(c.source == REDETECT),
            c.motion, c.background, c.colour or 0.0, float(c.colour is not None), size, aspect,
            float(c.inner_of_base), float(c.hits >= 2),
            math.log1p(age),
        ])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
