"""YOLOX-Nano COCO detector (ONNX, onnxruntime) as a grounder: phrases become COCO classes plus
attribute words (colour, position, size) that re-rank the detections of those classes.

Model facts (``shared/data/yolox_nano_coco/README.md``): input 1x3x416x416 float32 BGR 0-255,
letterbox at the top-left with pad value 114; output 3549x85 rows over the stride 8/16/32 grids,
``cx_off, cy_off, log_w, log_h, objectness, 80 class scores`` (sigmoids already applied).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Sequence

import cv2
import numpy as np

from chattracker.config import Range, Why, check_settings
from chattracker.errors import ChatTrackerError
from chattracker.grounding.base import check_rgb_image, register_grounder
from chattracker.grounding.colors import color_match, region_colors
from chattracker.grounding.phrases import ParsedPhrase, parse_phrase, vocabulary
from chattracker.grounding.relations import position_match, size_match
from chattracker.onnx_sessions import onnx_session
from chattracker.types import Box, Frame, Proposals
from chattracker.weights import resolve_weight

logger = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
PAD_VALUE = 114
# Final box score = class score * (1 - w + w * mean attribute match): an attribute that fits fully
# keeps the detector's score, one that does not fit at all costs up to 60% of it, which is enough
# to put "the person on the left" above a more confident person on the right.
ATTRIBUTE_WEIGHT = 0.6
# Two boxes of one phrase overlapping more than this are one object found under two class names
# (a "vehicle" seen as both car and truck).
SAME_OBJECT_IOU = 0.7


@dataclass
class Detections:
    """Everything one ONNX pass found: boxes (x, y, w, h in the original image), the class that
    kept each box through NMS, its score, and the box's scores for all 80 classes."""

    boxes: np.ndarray  # (N, 4)
    class_ids: np.ndarray  # (N,)
    scores: np.ndarray  # (N,)
    class_scores: np.ndarray  # (N, 80) objectness * class probability


def free_input_size(path: Path) -> bytes:
    """The exported graph with a free input height and width: it fixes 416 x 416, but every layer is a
    convolution, a resize by scale or a reshape to (1, 85, -1), so any multiple of 32 runs through."""
    import onnx

    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = "height", "width"
        else:
            dims[1].dim_param = "cells"
    del model.graph.value_info[:]
    return model.SerializeToString()


class YoloxGrounder:
    """``detect(image)`` gives all COCO detections; ``ground(image, phrases)`` those matching phrases.

    One ONNX inference per image, whatever the number of phrases: the last image's detections are
    cached (keyed by a hash of its pixels), so the tracker's foreground and background queries on the
    same frame share one pass.
    """

    name = "yolox"

    def __init__(
        self,
        weights: str | Path | None = None,
        score_threshold: Annotated[float, Range(0.0, 1.0), Why(
            "detections scoring below this are dropped (YOLOX's demo uses 0.25)")] = 0.25,
        nms_threshold: Annotated[float, Range(0.0, 1.0, low_open=True), Why(
            "IoU above which the weaker of two same-class boxes is suppressed (YOLOX's demo uses 0.45)")] = 0.45,
        threads: Annotated[int | None, Range(1, 1024), Why(
            "ONNX Runtime threads (null: the process's share of the cores)")] = None,
        input_size: Annotated[int, Range(64, 4096), Why(
            "whole frames are resized to this side (a multiple of 32; the model was trained at 416)")] = 416,
        region_input: Annotated[int, Range(64, 4096), Why(
            "search regions are resized to this side (a multiple of 32): 320 is faster than 416 at equal recall "
            "on the small crops")] = 320,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < nms_threshold <= 1.0:
            raise ChatTrackerError(
                f"yolox: score_threshold must be in [0, 1] and nms_threshold in (0, 1], "
                f"got {score_threshold} and {nms_threshold}"
            )
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        if not 64 <= int(region_input) <= int(input_size) or int(input_size) % 32 or int(region_input) % 32:
            raise ChatTrackerError(f"yolox: need 64 <= region_input <= input_size, both multiples of 32, got "
                                   f"{region_input} and {input_size}")
        self.input_size = int(input_size)
        self.region_input = int(region_input)
        path = resolve_weight("yolox_nano_coco", weights)
        try:
            # threads None: the process's share of the cores (an eval worker's share when several run side by
            # side); 29 ms on one thread, 19 ms on two for a 416-px frame on this project's 2-core machine.
            self._session = onnx_session(free_input_size(path), threads)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ChatTrackerError(f"yolox: cannot load ONNX model {path}: {error}") from None
        self._input_name = self._session.get_inputs()[0].name
        self.classes = vocabulary().classes
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._cache_key: str | None = None
        self._cache: Detections | None = None
        self._zoom_key: str | None = None
        self._zoom: Detections | None = None
        self._candidates_memo: tuple[Detections | None, dict[tuple[int, ...], list[int]]] = (None, {})

    def _grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Cell offsets and strides of the three heads for an input of ``height x width`` (cached)."""
        if (height, width) not in self._grids:
            grids, strides = [], []
            for stride in STRIDES:
                rows, columns = height // stride, width // stride
                ys, xs = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
                grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
                strides.append(np.full((rows * columns, 1), stride))
            self._grids[(height, width)] = (np.concatenate(grids).astype(np.float32),
                                            np.concatenate(strides).astype(np.float32))
        return self._grids[(height, width)]

    @staticmethod
    def input_shape(height: int, width: int, side: int) -> tuple[int, int, float]:
        """The network input for an image whose longer side goes to ``side``: letterboxed into a square
        as the model was trained (padding only to the stride, 416 x 256 for a 16:9 frame, was measured:
        it changes weak detections near the padded edge, and with them the describer's category for
        VOT bag). Returns (input height, input width, scale)."""
        return side, side, min(side / height, side / width)

    def _preprocess(self, image: Frame, side: int) -> tuple[np.ndarray, float]:
        height, width = image.shape[:2]
        in_h, in_w, ratio = self.input_shape(height, width, side)
        new_w, new_h = min(in_w, max(1, int(round(width * ratio)))), min(in_h, max(1, int(round(height * ratio))))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas = np.full((in_h, in_w, 3), PAD_VALUE, dtype=np.uint8)
        canvas[:new_h, :new_w] = resized
        # RGB -> BGR (the order the model was trained on), HWC -> NCHW float32: one C++ pass (half the time
        # of numpy's transpose and astype, the same values).
        return cv2.dnn.blobFromImage(canvas, swapRB=True), ratio

    def _run(self, image: Frame, side: int | None = None) -> Detections:
        image = check_rgb_image(image, "yolox")
        blob, ratio = self._preprocess(image, side or self.input_size)
        raw = self._session.run(None, {self._input_name: blob})[0][0]
        grid, strides = self._grid(blob.shape[2], blob.shape[3])
        if raw.shape != (len(grid), 5 + len(self.classes)):
            raise ChatTrackerError(f"yolox: unexpected output shape {raw.shape}")
        # A class score is objectness x class probability, so cells whose objectness is under the threshold
        # cannot pass: decoding only the others gives the same detections at a fraction of the cost.
        live = np.flatnonzero(raw[:, 4] >= self.score_threshold)
        raw, grid, strides = raw[live], grid[live], strides[live]
        centers = (raw[:, :2] + grid) * strides
        sizes = np.exp(np.minimum(raw[:, 2:4], 20.0)) * strides  # clamp: exp of junk overflows
        class_scores = raw[:, 4:5] * raw[:, 5:]
        # Class-aware NMS over every (cell, class) pair above threshold, so one box can stand for
        # two classes (a pickup as car and truck) and a phrase's class still finds it.
        cells, class_ids = np.nonzero(class_scores >= self.score_threshold)
        if len(cells) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), np.zeros((0, len(self.classes))))
        scores = class_scores[cells, class_ids]
        xywh = np.concatenate([centers[cells] - sizes[cells] / 2, sizes[cells]], axis=1) / ratio
        keep = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), class_ids.tolist(), self.score_threshold, self.nms_threshold
        )
        keep = np.asarray(keep, dtype=int).reshape(-1)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        height, width = image.shape[:2]
        boxes = np.array([Box.from_any(b).clip(width, height).to_list() for b in xywh[keep]]).reshape(-1, 4)
        return Detections(boxes, class_ids[keep], scores[keep].astype(np.float64),
                          class_scores[cells[keep]].astype(np.float64))

    def detections(self, image: Frame, side: int | None = None) -> Detections:
        """All detections of ``image`` with its longer side at ``side`` (default ``input_size``); the
        same pixels twice in a row cost one inference."""
        image = check_rgb_image(image, "yolox")
        side = side or self.input_size
        key = (hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()
               + f"{image.shape}@{side}")
        if key != self._cache_key or self._cache is None:
            self._cache = self._run(image, side)
            self._cache_key = key
        return self._cache

    def zoomed_detections(self, image: Frame, grid: int = 2, overlap: float = 0.25) -> Detections:
        """Detections of the whole frame and of ``grid`` x ``grid`` overlapping tiles, merged.

        At 416 px a 640x360 frame shrinks a 40 px airplane to 26 px and YOLOX-Nano misses it; each tile
        is enlarged ``grid`` times as much. A tile's box touching the tile's inner border is a cut-off
        part of an object the neighbouring tile or the whole frame sees entire, so it is dropped.
        """
        image = check_rgb_image(image, "yolox")
        key = f"zoom{grid}:{overlap}:" + hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()
        if key == self._zoom_key and self._zoom is not None:
            return self._zoom
        height, width = image.shape[:2]
        parts = [self.detections(image)]
        tile_w, tile_h = width / grid * (1 + overlap), height / grid * (1 + overlap)
        for row in range(grid):
            for column in range(grid):
                x0 = int(round(min(column * width / grid, width - tile_w))) if grid > 1 else 0
                y0 = int(round(min(row * height / grid, height - tile_h))) if grid > 1 else 0
                x1, y1 = min(width, int(round(x0 + tile_w))), min(height, int(round(y0 + tile_h)))
                found = self._run(np.ascontiguousarray(image[y0:y1, x0:x1]))
                keep = []
                for i, (bx, by, bw, bh) in enumerate(found.boxes):
                    cut = ((bx <= 1 and x0 > 0) or (by <= 1 and y0 > 0) or (bx + bw >= x1 - x0 - 1 and x1 < width)
                           or (by + bh >= y1 - y0 - 1 and y1 < height))
                    if not cut:
                        keep.append(i)
                boxes = found.boxes[keep] + np.array([x0, y0, 0, 0], dtype=float) if keep else np.zeros((0, 4))
                parts.append(Detections(boxes, found.class_ids[keep], found.scores[keep], found.class_scores[keep]))
        boxes = np.concatenate([p.boxes.reshape(-1, 4) for p in parts])
        class_ids = np.concatenate([p.class_ids for p in parts]).astype(int)
        scores = np.concatenate([p.scores for p in parts])
        class_scores = np.concatenate([p.class_scores.reshape(-1, len(self.classes)) for p in parts])
        if len(scores):
            keep = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), class_ids.tolist(), 0.0, self.nms_threshold)
            keep = np.asarray(keep, dtype=int).reshape(-1)
            keep = keep[np.argsort(-scores[keep], kind="stable")]
            merged = Detections(boxes[keep], class_ids[keep], scores[keep], class_scores[keep])
        else:
            merged = parts[0]
        self._zoom_key, self._zoom = key, merged
        return merged

    def detect(self, image: Frame) -> Proposals:
        """Every COCO detection, labelled with its class name."""
        found = self.detections(image)
        labels = [self.classes[c] for c in found.class_ids]
        return Proposals(found.boxes.copy(), found.scores.copy(), labels, None)

    def ground(self, image: Frame, phrases: Sequence[str]) -> Proposals:
        """Boxes of each phrase's classes, re-ranked by its attribute words, with word scores."""
        return self.ground_detections(image, self.detections(image), phrases)

    def region_side(self, height: int, width: int) -> int:
        """The input side for a search region: its own size (rounded up to the stride), between
        ``region_input`` and ``input_size``. A region up to 320 px is enlarged to 320 only (the target fills
        about half of it, so more enlargement adds little, and costs time with the square of the side: 21
        against 12 ms a round on this project's 2-core machine); one between 320 and 416 px is not shrunk,
        since a box grown around the target (scale drift) leaves the real target small inside it; a larger
        one goes to 416 as a whole frame does."""
        return min(self.input_size, max(self.region_input, -(-max(height, width) // 32) * 32))

    def ground_region(self, image: Frame, phrases: Sequence[str]) -> Proposals:
        """``ground`` on a search region around the target, at ``region_side``. Position words are not
        judged there: the description placed the target among the same-class objects of the whole
        frame ("the clock at the bottom"), and a crop holds only some of them, so "bottom" there picks
        whichever neighbour is lower (measured on the first demo scene: the look-alike crossing under the
        target scored as high as the target)."""
        side = self.region_side(*image.shape[:2])
        return self.ground_detections(image, self.detections(image, side), phrases, judge_positions=False)

    def ground_zoomed(self, image: Frame, phrases: Sequence[str], grid: int = 2) -> Proposals:
        """``ground`` over the whole frame and its enlarged tiles: small objects are found too."""
        return self.ground_detections(image, self.zoomed_detections(image, grid), phrases)

    def ground_detections(self, image: Frame, found: Detections, phrases: Sequence[str],
                          judge_positions: bool = True) -> Proposals:
        """``ground`` over given detections (position and size words judged among all of them;
        ``judge_positions=False``: position words count as words a detector cannot check)."""
        if isinstance(phrases, str):
            phrases = [phrases]
        parsed = [parse_phrase(p) for p in dict.fromkeys(p.strip() for p in phrases if p and p.strip())]
        colors: dict[int, dict[str, float]] = {}  # detection row -> colour shares, shared by all phrases
        rows: list[int] = []
        labels: list[str] = []
        scores: list[float] = []
        for phrase in parsed:
            chosen = self._candidates(found, phrase)
            if not chosen:
                logger.debug("yolox: no detection for %r (classes %s)", phrase.text, phrase.classes)
                continue
            _, final = self._word_scores(image, found, phrase, chosen, colors, judge_positions)
            for j in np.argsort(-final, kind="stable"):
                rows.append(chosen[j])
                labels.append(phrase.text)
                scores.append(float(final[j]))
        token_scores = {
            phrase.text: (list(phrase.words), self._word_scores(image, found, phrase, rows, colors, judge_positions)[0])
            for phrase in parsed
        }
        boxes = found.boxes[rows] if rows else np.zeros((0, 4))
        return Proposals(boxes, np.asarray(scores), labels, token_scores)

    def _candidates(self, found: Detections, phrase: ParsedPhrase) -> list[int]:
        """Detections of the phrase's classes, one per object (the best-scoring class wins)."""
        class_ids = tuple(self.classes.index(c) for c in phrase.classes)
        memo_found, memo = self._candidates_memo
        if memo_found is not found:  # every phrase of a round asks this of the same detections several times
            memo = {}
            self._candidates_memo = (found, memo)
        if class_ids not in memo:
            memo[class_ids] = _one_per_object(found, class_ids)
        return list(memo[class_ids])

    def _word_scores(
        self, image: Frame, found: Detections, phrase: ParsedPhrase, rows: list[int],
        colors: dict[int, dict[str, float]], judge_positions: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(len(rows), len(words))`` support of each word for each box, and each box's final score.

        Head noun: the box's score for the head's classes. Colour word: share of the box centre in
        that colour. Position and size words: where the box lies among the phrase's own candidates
        (in the image when it is alone). Other nouns of the phrase: the score of an overlapping
        detection of their class ("person riding a horse"). Words a detector cannot check: 0.
        """
        matrix = np.zeros((len(rows), len(phrase.words)))
        final = np.zeros(len(rows))
        if not rows:
            return matrix, final
        height, width = image.shape[:2]
        boxes = [Box.from_any(found.boxes[i]) for i in rows]
        head_ids = [self.classes.index(c) for c in phrase.classes]
        head_scores = found.class_scores[rows][:, head_ids].max(axis=1) if head_ids else np.zeros(len(rows))
        # Position and size are relative to the other boxes of the same kind, as people use them.
        peers = [Box.from_any(found.boxes[i]) for i in self._candidates(found, phrase)] or boxes
        attribute_columns: list[int] = []
        for column, word in enumerate(phrase.words):
            if word == phrase.head:
                matrix[:, column] = head_scores
            elif word in phrase.colors:
                for i, row in enumerate(rows):
                    if row not in colors:
                        colors[row] = region_colors(image, boxes[i])
                matrix[:, column] = [color_match(colors[row], word) for row in rows]
                attribute_columns.append(column)
            elif word in phrase.positions:
                if not judge_positions:
                    continue
                matrix[:, column] = [position_match(b, peers, phrase.positions[word], width, height) for b in boxes]
                attribute_columns.append(column)
            elif word in phrase.sizes:
                matrix[:, column] = [size_match(b, peers, phrase.sizes[word]) for b in boxes]
                attribute_columns.append(column)
            elif word in phrase.context:
                matrix[:, column] = [self._context_match(found, b, phrase.context[word]) for b in boxes]
        factor = 1.0
        if attribute_columns:
            factor = 1.0 - ATTRIBUTE_WEIGHT + ATTRIBUTE_WEIGHT * matrix[:, attribute_columns].mean(axis=1)
        final = head_scores * factor
        return matrix, final

    def _context_match(self, found: Detections, box: Box, classes: tuple[str, ...]) -> float:
        ids = [self.classes.index(c) for c in classes]
        near = box.scaled(1.5)
        best = 0.0
        for i in range(len(found.scores)):
            if found.class_ids[i] in ids:
                other = Box.from_any(found.boxes[i])
                if other.iou(box) < 0.95 and near.iou(other) > 0.0:
                    best = max(best, float(found.scores[i]))
        return best



def _one_per_object(found: Detections, class_ids: tuple[int, ...]) -> list[int]:
    """Rows of ``found`` of ``class_ids``, best score first, dropping a row that overlaps a kept one at
    ``SAME_OBJECT_IOU`` or more (the IoU of ``Box.iou``, vectorised: a crowd gives hundreds of pairs)."""
    rows = [i for i in range(len(found.scores)) if found.class_ids[i] in class_ids]
    rows.sort(key=lambda i: -found.scores[i])
    if not rows:
        return []
    boxes = np.asarray(found.boxes, dtype=float)[rows]
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = np.maximum(boxes[:, 2], 0.0) * np.maximum(boxes[:, 3], 0.0)
    kept: list[int] = []
    for k in range(len(rows)):
        if kept:
            others = np.asarray(kept)
            iw = np.maximum(0.0, np.minimum(x2[k], x2[others]) - np.maximum(x1[k], x1[others]))
            ih = np.maximum(0.0, np.minimum(y2[k], y2[others]) - np.maximum(y1[k], y1[others]))
            inter = iw * ih
            union = areas[k] + areas[others] - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
            if (iou >= SAME_OBJECT_IOU).any():
                continue
        kept.append(k)
    return [rows[k] for k in kept]


@register_grounder("yolox")
def build_yolox(**params: object) -> YoloxGrounder:
    return YoloxGrounder(**check_settings("grounder yolox", params, YoloxGrounder))
