"""The remembered look of the target: embeddings of its confirmed crops (the first is never evicted).

Similarity to the memory is the best cosine over its entries, so a target whose look changed since
frame 1 still matches its recent confirmed look. The embedder is chosen by measurement
(``bench/appearance.py``; ``chattracker.fusion.embedding``).
"""

from __future__ import annotations

import numpy as np

from chattracker.fusion.embedding import Embedder
from chattracker.types import Box, Frame


class AppearanceMemory:
    """Up to ``size`` confirmed looks of the target and their boxes."""

    def __init__(self, embedder: Embedder, size: int = 8) -> None:
        if size < 1:
            raise ValueError("appearance memory size must be at least 1")
        self.embedder = embedder
        self.size = size
        self.entries: list[np.ndarray] = []
        self.boxes: list[Box] = []
        self.background, self.self_similarity = 0.0, 1.0  # raw cosine scale until calibrate()

    def __len__(self) -> int:
        return len(self.entries)

    def embed(self, frame: Frame, boxes: list[Box]) -> np.ndarray:
        return self.embedder.embed(frame, boxes)

    def add(self, frame: Frame, box: Box, embedding: np.ndarray | None = None) -> bool:
        """Remember ``box``'s look (a zero embedding, from a box outside the frame, is not kept)."""
        vector = self.embed(frame, [box])[0] if embedding is None else embedding
        if not np.any(vector):
            return False
        if len(self.entries) >= self.size:
            del self.entries[1]  # keep the initial look; drop the oldest of the later ones
            del self.boxes[1]
        self.entries.append(np.asarray(vector, dtype=np.float32))
        self.boxes.append(box)
        return True

    def calibrate(self, frame: Frame, box: Box, seed: int = 0) -> None:
        """Measure, on the first frame, what "the same object" and "something else" score with this
        embedder: the target's box shifted and rescaled a little, and boxes of its size elsewhere.
        Similarities are then reported on that scale (0 = background, 1 = the target itself), so one
        threshold means the same for every embedder and every sequence."""
        anchor = self.entries[0]
        rng = np.random.default_rng(seed)
        height, width = frame.shape[:2]
        jittered = [Box(box.x + dx * box.w, box.y + dy * box.h, box.w * s, box.h * s)
                    for dx, dy, s in rng.uniform([-0.1, -0.1, 0.9], [0.1, 0.1, 1.1], size=(6, 3))]
        elsewhere = []
        for _ in range(64):
            x, y = rng.uniform(0, max(width - box.w, 1)), rng.uniform(0, max(height - box.h, 1))
            candidate = Box(float(x), float(y), box.w, box.h)
            if candidate.iou(box) < 0.05:
                elsewhere.append(candidate)
            if len(elsewhere) == 8:
                break
        same = self.embed(frame, jittered) @ anchor
        other = self.embed(frame, elsewhere) @ anchor if elsewhere else np.zeros(1)
        self.background = float(np.median(other))
        self.self_similarity = max(float(np.median(same)), self.background + 0.05)

    def cosine(self, embedding: np.ndarray | None) -> float:
        """Best raw cosine of ``embedding`` to any remembered look (0 for none)."""
        if embedding is None or not self.entries or not np.any(embedding):
            return 0.0
        return float(max(0.0, float(np.max(np.stack(self.entries) @ embedding))))

    def similarity(self, embedding: np.ndarray | None) -> float:
        """Best cosine to a remembered look on the calibrated scale (0 = background level, 1 = the
        target's own level on frame 1; can exceed 1); 0 for no embedding."""
        if embedding is None or not self.entries or not np.any(embedding):
            return 0.0
        return self.calibrated(self.cosine(embedding))

    def calibrated(self, cosine: float) -> float:
        return max(0.0, (cosine - self.background) / (self.self_similarity - self.background))

    def typical_size(self) -> tuple[float, float]:
        """Median width and height of the last confirmed boxes (the size the target should have)."""
        if not self.boxes:
            raise ValueError("the appearance memory is empty")
        return (float(np.median([b.w for b in self.boxes[-4:]])), float(np.median([b.h for b in self.boxes[-4:]])))
