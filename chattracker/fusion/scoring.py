"""Step 3: score every candidate of a round from its look, its finding, its motion and its context.

    total = w_appearance * similarity to the target
          - w_distractor * similarity to the known distractors
          + w_grounding * finding score + w_motion * exp(-motion distance)
          - w_background * IoU with the best-overlapping background proposal

The distractor term is DaSiamRPN's idea in embedding form: a candidate that looks like one of the
look-alikes seen around the target is less likely the target, however confident its finding.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from chattracker.fusion.appearance import AppearanceMemory
from chattracker.fusion.candidates import Candidate
from chattracker.types import Box


def score_candidates(candidates: list[Candidate], memory: AppearanceMemory,
                     distractors: list[tuple[int, np.ndarray]], prior: Box, background: list[Box],
                     motion_distance: Callable[[Box, Box], float], weights) -> None:
    """Fill in each (embedded) candidate's component scores and total (in place)."""
    for candidate in candidates:
        vector = candidate.embedding
        candidate.appearance = memory.similarity(vector)
        # Other identities only: a candidate is not penalised for resembling itself.
        others = [e for identity, e in distractors if identity != candidate.identity]
        candidate.distractor = (0.0 if not others or vector is None or not np.any(vector)
                                else memory.calibrated(float(np.max(np.stack(others) @ vector))))
        candidate.motion = math.exp(-motion_distance(candidate.box, prior))
        candidate.background = max((candidate.box.iou(b) for b in background), default=0.0)
        candidate.total = (weights.w_appearance * candidate.appearance - weights.w_distractor * candidate.distractor
                           + weights.w_grounding * candidate.grounding + weights.w_motion * candidate.motion
                           - weights.w_background * candidate.background)
