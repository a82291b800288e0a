"""Class-agnostic re-detection with a Siamese template: candidates where no detector class fits.

A COCO detector misses targets with no COCO class (a bag, a toy, a face) and small ones on a whole
frame (DESIGN.md section 7). NanoTrack's own networks (backbone + head, run through onnxruntime)
match the frame-1 template against 255-px search windows, each scanned at the template's scale: around
the motion prior every round, and over a coarse grid of the frame when the target seems lost. Peaks of
the classification map become candidates, with boxes from the head's regression. The base tracker
may be anything (CSRT, yours): the wrapper keeps its own template.
"""

from __future__ import annotations

import math

import numpy as np

from chattracker.fusion.embedding import batched_session, context_crop, nanotrack_backbone_session
from chattracker.types import Box, Frame

EXEMPLAR, SEARCH, STRIDE, SCORE_SIZE = 127, 255, 16, 16


class TemplateRedetector:
    """NanoTrack v2's backbone and head with a fixed template taken at ``initialize``."""

    def __init__(self, backbone: str | None = None, head: str | None = None) -> None:
        from chattracker.weights import resolve_weight

        backbone_path = resolve_weight("nanotrack_v2_backbone", backbone)
        self.backbone = nanotrack_backbone_session(backbone_path)
        # The head is exported for one (template, search) pair; freed, it takes all windows of a round at once.
        self.head = batched_session(resolve_weight("nanotrack_v2_head", head))
        self._head_inputs = [i.name for i in self.head.get_inputs()]
        self.template: np.ndarray | None = None
        self.size = (0.0, 0.0)
        self.weight_paths = (backbone_path,)
        # Grid positions of the score map in search-crop pixels relative to the crop's centre (cell
        # SCORE_SIZE // 2 sits on it: measured, the frame-1 template then finds its own box).
        offsets = (np.arange(SCORE_SIZE) - SCORE_SIZE // 2) * STRIDE
        self._grid_x, self._grid_y = np.meshgrid(offsets, offsets)

    def _features(self, crops: np.ndarray) -> np.ndarray:
        """Backbone features of a batch of RGB crops (N, side, side, 3)."""
        blob = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        return self.backbone.run(None, {self.backbone.get_inputs()[0].name: blob})[0]

    @staticmethod
    def exemplar_side(w: float, h: float) -> float:
        pad = 0.5 * (w + h)
        return math.sqrt(max((w + pad) * (h + pad), 4.0))

    def initialize(self, frame: Frame, box: Box) -> None:
        self.template = self._features(context_crop(frame, box, EXEMPLAR)[None])
        self.size = (box.w, box.h)

    def search(self, frame: Frame, center: tuple[float, float], size: tuple[float, float] | None = None,
               min_score: float = 0.5, peaks: int = 3) -> list[tuple[Box, float]]:
        """Boxes (frame coordinates) and scores of up to ``peaks`` local maxima of the match map of
        one search window centred at ``center``, at the scale of a target of ``size`` (default: the
        template's)."""
        return self.search_many(frame, [center], size, min_score, peaks)[0]

    def search_many(self, frame: Frame, centers: list[tuple[float, float]], size: tuple[float, float] | None = None,
                    min_score: float = 0.5, peaks: int = 3) -> list[list[tuple[Box, float]]]:
        """``search`` for several windows with one backbone and one head pass (a batch costs about
        two thirds per window of one-by-one calls, with the same values)."""
        if self.template is None:
            raise RuntimeError("TemplateRedetector.search() called before initialize()")
        if not centers:
            return []
        w, h = size or self.size
        side = self.exemplar_side(w, h) * SEARCH / EXEMPLAR
        windows = [Box(cx - side / 2.0, cy - side / 2.0, side, side) for cx, cy in centers]
        crops = np.stack([context_crop(frame, window, SEARCH, context=0.0) for window in windows])
        features = self._features(crops)
        template = np.repeat(self.template, len(centers), axis=0)
        logits, regression = self.head.run(None, dict(zip(self._head_inputs, (template, features))))
        return [self._peaks(logits[k], regression[k], center, side / SEARCH, min_score, peaks)
                for k, center in enumerate(centers)]

    def _peaks(self, logits: np.ndarray, regression: np.ndarray, center: tuple[float, float], scale: float,
               min_score: float, peaks: int) -> list[tuple[Box, float]]:
        logits = logits - logits.max(axis=0, keepdims=True)
        score = np.exp(logits[1]) / np.exp(logits).sum(axis=0)
        cx, cy = center
        found: list[tuple[Box, float]] = []
        for index in np.argsort(score, axis=None)[::-1]:
            i, j = divmod(int(index), SCORE_SIZE)
            value = float(score[i, j])
            if value < min_score or len(found) >= peaks:
                break
            patch = score[max(i - 1, 0): i + 2, max(j - 1, 0): j + 2]
            if value < patch.max():
                continue  # not a local maximum
            left, top, right, bottom = regression[:, i, j]
            x1 = self._grid_x[i, j] - left
            y1 = self._grid_y[i, j] - top
            x2 = self._grid_x[i, j] + right
            y2 = self._grid_y[i, j] + bottom
            box = Box(cx + x1 * scale, cy + y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale)
            if box.w > 1 and box.h > 1 and all(box.iou(other) < 0.3 for other, _ in found):
                found.append((box, value))
        return found

    def grid_centers(self, width: int, height: int, size: tuple[float, float] | None = None,
                     limit: int = 6) -> list[tuple[float, float]]:
        """Centres of search windows that tile the frame at the template's scale (at most ``limit``,
        the windows coarsened until they fit), for a global search when the target is lost."""
        w, h = size or self.size
        side = self.exemplar_side(w, h) * SEARCH / EXEMPLAR
        # The useful part of a window is its middle (the score map covers about its central 3/4).
        step = 0.75 * side
        while True:
            columns, rows = max(1, math.ceil(width / step)), max(1, math.ceil(height / step))
            if columns * rows <= limit:
                break
            step *= 1.25
        xs = [(k + 0.5) * width / columns for k in range(columns)]
        ys = [(k + 0.5) * height / rows for k in range(rows)]
        return [(x, y) for y in ys for x in xs]
