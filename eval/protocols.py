"""Scoring protocols: how one sequence's result rows become curves, and how curves are averaged.

``official`` follows the LaSOT/TNL2K MATLAB toolkits (``calc_seq_err_robust.m``, ``calc_rect_int.m``,
``eval_tracker.m``, ``plot_draw_save.m``) operation by operation, including MATLAB's NaN handling in
``min``/``max``. ``pytracking`` follows pytracking's ``analysis/extract_results.py`` so numbers can be
compared with papers scored in Python. Every report names the protocol it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol

import numpy as np

from chattracker.errors import InputError
from chattracker_eval.metrics import (
    MATLAB_EPS, NORM_PRECISION_THRESHOLDS, PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, Average, Curves,
    average_official, average_plain,
)


class ResultError(InputError):
    """A result that the protocol refuses to score (too short, or invalid values under pytracking)."""


@dataclass
class FrameErrors:
    """Per scored frame: IoU, center error (px) and normalized center error, plus the denominator."""

    iou: np.ndarray
    center: np.ndarray
    norm_center: np.ndarray
    denominator: float


class ScoringProtocol(TypingProtocol):
    name: str

    def frame_errors(self, results: np.ndarray, truth: np.ndarray, absent: np.ndarray | None) -> FrameErrors: ...

    def average(self, per_sequence: list[Curves]) -> Average: ...


def curves_from_errors(errors: FrameErrors, dtype: type = np.float64) -> Curves:
    """Fraction of frames passing each threshold: IoU strictly above, center error at or below."""
    iou, center, norm = errors.iou[:, None], errors.center[:, None], errors.norm_center[:, None]
    # NaN compares False both ways, so a NaN error fails every threshold, as in MATLAB and torch.
    success = (iou > SUCCESS_THRESHOLDS[None, :]).sum(axis=0)
    precision = (center <= PRECISION_THRESHOLDS[None, :]).sum(axis=0)
    norm_precision = (norm <= NORM_PRECISION_THRESHOLDS[None, :]).sum(axis=0)
    denominator = dtype(errors.denominator)
    return Curves(success.astype(dtype) / denominator, precision.astype(dtype) / denominator,
                  norm_precision.astype(dtype) / denominator)


def absent_mask(absent: np.ndarray | None, length: int) -> np.ndarray:
    """Absent flags as a boolean mask of exactly ``length`` frames (extra lines cut, missing ones 0)."""
    mask = np.zeros(length, dtype=bool)
    if absent is not None:
        flags = np.asarray(absent).reshape(-1)[:length] == 1
        mask[: len(flags)] = flags
    return mask


def _previous_valid_rows(invalid: np.ndarray) -> np.ndarray:
    """Index of the row each row becomes after "replace by the previous row", cascading."""
    index = np.arange(len(invalid))
    index[invalid] = 0
    return np.maximum.accumulate(index)


class OfficialProtocol:
    """The MATLAB toolkits' rules (DESIGN.md section 5). ``keep_first``: frame 1 was predicted (a start
    from language alone), so it is scored as given instead of being replaced by the ground truth."""

    name = "official"

    def __init__(self, keep_first: bool = False) -> None:
        self.keep_first = keep_first

    def frame_errors(self, results: np.ndarray, truth: np.ndarray, absent: np.ndarray | None) -> FrameErrors:
        truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
        results = np.asarray(results, dtype=np.float64)
        count = len(truth)
        if results.ndim != 2 or results.shape[1] < 4:
            raise ResultError("result rows need four values x,y,w,h")
        if len(results) < count:
            raise ResultError(f"has {len(results)} rows but the ground truth has {count} frames")
        results = results[:count, :4].copy()
        if count == 0:
            raise ResultError("the ground truth has no frames")
        # From frame 2 on, a row with NaN or a non-positive size becomes the previous row (cascading),
        # but only where the ground-truth row has no NaN; frame 1 is compared as-is before its replacement.
        invalid = np.isnan(results).any(axis=1) | (results[:, 2] <= 0) | (results[:, 3] <= 0)
        invalid &= ~np.isnan(truth).any(axis=1)
        invalid[0] = False
        boxes = results[_previous_valid_rows(invalid)]
        if not self.keep_first:
            boxes[0] = truth[0]
        keep = ~absent_mask(absent, count)
        boxes, gt = boxes[keep], truth[keep]
        valid = (gt > 0).sum(axis=1) == 4
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = matlab_rect_overlap(boxes, gt)
            center = _center_error(boxes, gt, normalized=False)
            norm_center = _center_error(boxes, gt, normalized=True)
        iou[~valid] = -1.0
        center[~valid] = -1.0
        norm_center[~valid] = -1.0
        return FrameErrors(iou, center, norm_center, count + MATLAB_EPS)

    def average(self, per_sequence: list[Curves]) -> Average:
        return average_official(per_sequence)


def matlab_rect_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``calc_rect_int.m``: inclusive pixel edges (same as continuous ``x + w``), with MATLAB's
    ``min``/``max`` that skip NaN (``np.fmin``/``np.fmax``)."""
    left_a, bottom_a = a[:, 0], a[:, 1]
    right_a, top_a = left_a + a[:, 2] - 1, bottom_a + a[:, 3] - 1
    left_b, bottom_b = b[:, 0], b[:, 1]
    right_b, top_b = left_b + b[:, 2] - 1, bottom_b + b[:, 3] - 1
    inter_w = np.fmax(0.0, np.fmin(right_a, right_b) - np.fmax(left_a, left_b) + 1)
    inter_h = np.fmax(0.0, np.fmin(top_a, top_b) - np.fmax(bottom_a, bottom_b) + 1)
    intersection = inter_w * inter_h
    return intersection / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - intersection)


def _center_error(boxes: np.ndarray, gt: np.ndarray, normalized: bool) -> np.ndarray:
    center = np.stack([boxes[:, 0] + (boxes[:, 2] - 1) / 2, boxes[:, 1] + (boxes[:, 3] - 1) / 2], axis=1)
    center_gt = np.stack([gt[:, 0] + (gt[:, 2] - 1) / 2, gt[:, 1] + (gt[:, 3] - 1) / 2], axis=1)
    if normalized:
        center = center / gt[:, 2:4]
        center_gt = center_gt / gt[:, 2:4]
    return np.sqrt(((center - center_gt) ** 2).sum(axis=1))


class PytrackingProtocol:
    """pytracking's ``calc_seq_err_robust`` + ``extract_results`` for one dataset kind.

    ``dataset`` is pytracking's dataset string: ``lasot`` gets its LaSOT special cases (short results
    are an error, absent frames fail normalized precision); other kinds pad short results with zeros.
    ``exclude_invalid_frames`` divides by the number of valid frames instead of all frames, the rule
    of pytracking before its ``exclude_invalid_frames`` flag (and of its forks) for non-LaSOT sets.
    """

    name = "pytracking"

    def __init__(self, dataset: str = "lasot", exclude_invalid_frames: bool = False, keep_first: bool = False) -> None:
        self.dataset = dataset
        self.exclude_invalid_frames = exclude_invalid_frames
        self.keep_first = keep_first

    def frame_errors(self, results: np.ndarray, truth: np.ndarray, absent: np.ndarray | None) -> FrameErrors:
        gt = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
        pred = np.asarray(results, dtype=np.float64)
        if pred.ndim != 2 or pred.shape[1] < 4:
            raise ResultError("result rows need four values x,y,w,h")
        pred = pred[:, :4].copy()
        if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
            raise ResultError("has NaN or negative sizes, which pytracking refuses ('Invalid results')")
        if np.isnan(gt).any() and self.dataset != "uav":
            # pytracking lets NaN rows through for UAV123 only (there they mark absent frames, invalid here).
            raise ResultError("the ground truth has NaN values")
        zero = (pred[:, 2:] == 0).any(axis=1)
        zero[0] = False
        pred = pred[_previous_valid_rows(zero)]
        count = len(gt)
        if len(pred) > count:
            pred = pred[:count]
        elif len(pred) < count:
            if self.dataset == "lasot":
                raise ResultError(f"has {len(pred)} rows but the ground truth has {count} frames")
            pred = np.vstack([pred, np.zeros((count - len(pred), 4))])
        if not self.keep_first:
            pred[0] = gt[0]
        visible = None if absent is None else ~absent_mask(absent, count)
        valid = (gt[:, 2:] > 0).sum(axis=1) == 2
        if visible is not None:
            valid &= visible
        with np.errstate(invalid="ignore", divide="ignore"):
            center = _center_error(pred, gt, normalized=False)
            norm_center = _center_error(pred, gt, normalized=True)
            iou = _pytracking_overlap(pred, gt)
        center[~valid] = np.inf
        norm_center[~valid] = -1.0
        iou[~valid] = -1.0
        if self.dataset == "lasot" and visible is not None:
            norm_center[~visible] = np.inf
            center[~visible] = np.inf
        if np.isnan(iou).any():
            raise ResultError("gives NaN overlaps (zero-area boxes), which pytracking refuses")
        denominator = float(valid.sum()) if self.exclude_invalid_frames else float(count)
        if denominator <= 0:
            raise ResultError("has no valid frame to score ('Seq length zero')")
        return FrameErrors(iou, center, norm_center, denominator)

    def average(self, per_sequence: list[Curves]) -> Average:
        return average_plain(per_sequence)


def _pytracking_overlap(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    top_left = np.maximum(pred[:, :2], gt[:, :2])
    bottom_right = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
    size = np.clip(bottom_right - top_left + 1.0, 0, None)
    intersection = size.prod(axis=1)
    union = pred[:, 2:].prod(axis=1) + gt[:, 2:].prod(axis=1) - intersection
    return intersection / union


# pytracking's dataset string per benchmark and whether its loader gives visibility flags. TNL2K and
# OTB loaders (pytracking, OSTrack) give none, so absent (all-zero) rows are merely invalid there:
# IoU -1 but normalized error -1 (passes), over all N frames. That is where Python-scored TNL2K
# numbers gain about +2.7 AUC and +8 P_norm over the toolkit on the same boxes (ground truth held
# through absence: 87.35 / 100.0 vs 84.66 / 91.72). The denominator is pytracking's current default
# (``exclude_invalid_frames=False``: all N frames).
PYTRACKING_SETTINGS = {
    "lasot": ("lasot", True),
    "lasot_ext": ("lasot_extension_subset", True),
    "tnl2k": ("tnl2k", False),
    "otb99_lang": ("otb", False),
    "otb": ("otb", False),
    "uav123": ("uav", False),
    "uav123_10fps": ("uav", False),
    "uav20l": ("uav", False),
    "got10k": ("got10k", False),
    "trackingnet": ("trackingnet", False),
}

PROTOCOL_NAMES = ("official", "pytracking")


def get_protocol(name: str, benchmark: str = "lasot", keep_first: bool = False) -> tuple[ScoringProtocol, bool]:
    """The protocol object and whether it takes the benchmark's absent flags; ``keep_first`` scores a
    predicted frame 1 (results of ``eval --init language``) instead of replacing it by the ground truth."""
    if name == "official":
        return OfficialProtocol(keep_first), True
    if name == "pytracking":
        dataset, uses_visibility = PYTRACKING_SETTINGS.get(benchmark, (benchmark, False))
        return PytrackingProtocol(dataset, keep_first=keep_first), uses_visibility
    raise InputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOL_NAMES)}")


def score_sequence(protocol: ScoringProtocol, results: np.ndarray, truth: np.ndarray,
                   absent: np.ndarray | None) -> Curves:
    errors = protocol.frame_errors(results, truth, absent)
    dtype = np.float32 if isinstance(protocol, PytrackingProtocol) else np.float64
    return curves_from_errors(errors, dtype)
