"""An independent, frame-by-frame transcription of the MATLAB toolkit's scoring, for cross-checks.

Written as a plain loop over frames in pure Python floats, following ``calc_seq_err_robust.m``,
``calc_rect_int.m``, ``eval_tracker.m`` and ``plot_draw_save.m`` line by line, and sharing no code
with ``chattracker_eval`` (so a mistake in the vectorised code cannot hide in both).
"""

from __future__ import annotations

import math

EPS = 2.220446049250313e-16  # MATLAB eps


def _isnan(v: float) -> bool:
    return v != v


def _mmin(a: float, b: float) -> float:
    """MATLAB min: a NaN operand is ignored."""
    if _isnan(a):
        return b
    if _isnan(b):
        return a
    return a if a < b else b


def _mmax(a: float, b: float) -> float:
    if _isnan(a):
        return b
    if _isnan(b):
        return a
    return a if a > b else b


def overlap_thresholds() -> list[float]:
    """MATLAB's 0:0.05:1 (first half from 0 upwards, second half from 1 downwards, middle (0+1)/2)."""
    out = []
    for k in range(21):
        if k < 10:
            out.append(0.0 + k * 0.05)
        elif k == 10:
            out.append((0.0 + 1.0) / 2)
        else:
            out.append(1.0 - (20 - k) * 0.05)
    return out


def sequence_curves(results, anno, absent, norm_dst: bool):
    """(success curve over 21 thresholds, error curve over 51 thresholds) for one sequence."""
    seq_length = len(anno)
    if len(results) < seq_length:
        raise ValueError("short")
    res = [[float(v) for v in row[:4]] for row in results[:seq_length]]
    gt = [[float(v) for v in row] for row in anno]
    for i in range(1, seq_length):
        r = res[i]
        r_anno = gt[i]
        bad = any(_isnan(v) for v in r) or r[2] <= 0 or r[3] <= 0
        if bad and not any(_isnan(v) for v in r_anno):
            res[i] = list(res[i - 1])
    rect_mat = [list(r) for r in res]
    rect_mat[0] = list(gt[0])
    kept_pred, kept_gt = [], []
    for i in range(seq_length):
        flag = absent[i] if i < len(absent) else 0
        if flag == 1:
            continue
        kept_pred.append(rect_mat[i])
        kept_gt.append(gt[i])
    coverage, center_err = [], []
    for p, g in zip(kept_pred, kept_gt):
        cx = p[0] + (p[2] - 1) / 2
        cy = p[1] + (p[3] - 1) / 2
        gx = g[0] + (g[2] - 1) / 2
        gy = g[1] + (g[3] - 1) / 2
        if norm_dst:
            cx, cy, gx, gy = cx / g[2], cy / g[3], gx / g[2], gy / g[3]
        err = math.sqrt((cx - gx) ** 2 + (cy - gy) ** 2) if not any(_isnan(v) for v in (cx, cy, gx, gy)) else float("nan")
        valid = g[0] > 0 and g[1] > 0 and g[2] > 0 and g[3] > 0
        if not valid:
            coverage.append(-1.0)
            center_err.append(-1.0)
            continue
        right_a, top_a = p[0] + p[2] - 1, p[1] + p[3] - 1
        right_b, top_b = g[0] + g[2] - 1, g[1] + g[3] - 1
        iw = _mmax(0.0, _mmin(right_a, right_b) - _mmax(p[0], g[0]) + 1)
        ih = _mmax(0.0, _mmin(top_a, top_b) - _mmax(p[1], g[1]) + 1)
        inter = iw * ih
        union = p[2] * p[3] + g[2] * g[3] - inter
        if union == 0:
            iou = float("nan")
        else:
            iou = inter / union
        coverage.append(iou)
        center_err.append(err)
    error_thresholds = [k / 100 if norm_dst else float(k) for k in range(51)]
    denominator = seq_length + EPS
    success = [sum(1 for v in coverage if v > t) / denominator for t in overlap_thresholds()]
    precision = [sum(1 for v in center_err if v <= t) / denominator for t in error_thresholds]
    return success, precision


def average(curves: list[list[float]]) -> list[float]:
    """plot_draw_save: keep rows whose sum > eps, mean of each column."""
    kept = [row for row in curves if sum(row) > EPS]
    return [sum(row[j] for row in kept) / len(kept) for j in range(len(kept[0]))]


def test_reference_thresholds_are_matlab_colon():
    values = overlap_thresholds()
    assert values[0] == 0.0 and values[10] == 0.5 and values[20] == 1.0
    assert values[3] != 0.15 and values[3] == 3 * 0.05     # MATLAB: (0:0.05:1)(4) ~= 0.15
