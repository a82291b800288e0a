"""Grounder protocol and registry (DESIGN.md section 3).

A grounder finds the objects a phrase names in an image: ``ground(image, phrases) -> Proposals``
with boxes, scores, the phrase that found each box and, where the model can, a box-by-word score
matrix per phrase (RPO picks positive and negative words from it).
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from chattracker.errors import ChatTrackerError
from chattracker.registry import Registry
from chattracker.types import Frame, Proposals


@runtime_checkable
class Grounder(Protocol):
    """Finds what each phrase names on a frame: boxes, scores, the phrase of each box and, where the model
    gives them, per-word scores (RPO reads those to pick its feedback words)."""

    name: str

    def ground(self, image: Frame, phrases: Sequence[str]) -> Proposals: ...


GROUNDERS: Registry[Grounder] = Registry("grounder", builtin_modules=("chattracker.grounding.yolox", "chattracker.grounding.hf"))
register_grounder = GROUNDERS.register
build_grounder = GROUNDERS.build


def check_rgb_image(image: Frame, who: str) -> np.ndarray:
    """The frame as an HxWx3 uint8 array, or one clear error naming the grounder ``who``."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
        raise ChatTrackerError(f"{who}: expected an HxWx3 uint8 RGB image, got {array.dtype} {array.shape}")
    return array
