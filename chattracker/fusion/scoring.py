"""Step 3a: measure every candidate of a round: its look, its finding, its motion and its context.

    appearance  similarity to the remembered target (calibrated: 0 background, 1 the target on frame 1)
    distractor  similarity to the known distractors (DaSiamRPN's idea in embedding form)
    motion      exp(-distance to the motion prior)
    background  IoU with the best-overlapping background proposal

These are measurements, not a verdict: the learned model (``target_model``) turns them, with the
others in ``features``, into the log-odds that the candidate is the target.
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
                     motion_distance: Callable[[Box, Box], float]) -> None:
    """Fill in each candidate's measurements (in place)."""
    for candidate in candidates:
        vector = candidate.embedding
        candidate.appearance = memory.similarity(vector)
        # Other identities only: a candidate is not penalised for resembling itself.
        others = [e for identity, e in distractors if identity != candidate.identity]
        candidate.distractor = (0.0 if not others or vector is None or not np.any(vector)
                                else memory.calibrated(float(np.max(np.stack(others) @ vector))))
        candidate.motion = math.exp(-motion_distance(candidate.box, prior))
        candidate.background = max((candidate.box.iou(b) for b in background), default=0.0)
