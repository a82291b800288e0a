"""A small memory of confirmed target appearances and a cheap similarity to it.

Features are deliberately cheap (a few hundred floats per crop, well under a millisecond): an
HSV colour histogram (what the target looks like) and a HOG of the grey crop (its shape), so the
verifier can afford to score every candidate on every grounding round.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from chattracker.types import Box, Frame

_HOG_SIZE = 32
_HOG = cv2.HOGDescriptor((_HOG_SIZE, _HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)


@dataclass
class AppearanceFeature:
    """Colour histogram (L1-normalised) and HOG (L2-normalised) of one crop."""

    histogram: np.ndarray
    hog: np.ndarray


def crop(frame: Frame, box: Box) -> np.ndarray | None:
    """The pixels inside ``box`` (clipped to the frame); None when less than 2x2 pixels remain."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = box.clip(width, height).to_xyxy()
    x1, y1, x2, y2 = int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return frame[y1:y2, x1:x2]


def describe_crop(frame: Frame, box: Box) -> AppearanceFeature | None:
    """Features of the crop under ``box``, or None when the box is (nearly) outside the frame."""
    pixels = crop(frame, box)
    if pixels is None:
        return None
    pixels = np.ascontiguousarray(pixels)
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).reshape(-1)
    histogram /= max(float(histogram.sum()), 1e-9)
    grey = cv2.resize(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), (_HOG_SIZE, _HOG_SIZE), interpolation=cv2.INTER_AREA)
    hog = _HOG.compute(grey).reshape(-1)
    hog /= max(float(np.linalg.norm(hog)), 1e-9)
    return AppearanceFeature(histogram.astype(np.float32), hog.astype(np.float32))


def similarity(a: AppearanceFeature, b: AppearanceFeature) -> float:
    """0..1: mean of histogram intersection and HOG cosine (both 1 for identical crops)."""
    colour = float(np.minimum(a.histogram, b.histogram).sum())
    shape = float(np.clip(np.dot(a.hog, b.hog), 0.0, 1.0))
    return 0.5 * (colour + shape)


class AppearanceMemory:
    """Up to ``size`` confirmed looks of the target; the first (the initial box) is never evicted.

    Similarity to the memory is the best match over its entries, so a target whose look changed
    since frame 1 still matches the recent confirmed look.
    """

    def __init__(self, size: int = 8) -> None:
        if size < 1:
            raise ValueError("appearance memory size must be at least 1")
        self.size = size
        self.entries: list[AppearanceFeature] = []
        self.boxes: list[Box] = []

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, frame: Frame, box: Box) -> bool:
        feature = describe_crop(frame, box)
        if feature is None:
            return False
        if len(self.entries) >= self.size:
            # Keep the initial look; drop the oldest of the later ones.
            del self.entries[1]
            del self.boxes[1]
        self.entries.append(feature)
        self.boxes.append(box)
        return True

    def score(self, frame: Frame, box: Box) -> float:
        """Best similarity of the crop under ``box`` to any remembered look (0 when it cannot be cropped)."""
        feature = describe_crop(frame, box)
        if feature is None or not self.entries:
            return 0.0
        return max(similarity(feature, entry) for entry in self.entries)

    def typical_size(self) -> tuple[float, float]:
        """Median width and height of the confirmed boxes (the size the target is expected to have)."""
        if not self.boxes:
            raise ValueError("the appearance memory is empty")
        return (float(np.median([b.w for b in self.boxes[-4:]])), float(np.median([b.h for b in self.boxes[-4:]])))
