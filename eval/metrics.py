"""Curves and summary numbers shared by every scoring protocol (DESIGN.md section 5).

A sequence is scored into three curves: success over IoU thresholds 0, 0.05, ..., 1, precision over
center errors 0..50 px, normalized precision over 0, 0.01, ..., 0.5. The summary numbers are the ones
papers print: AUC (mean of the 21 success values), P@20, P_norm@0.2, OP50 and OP75.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MATLAB_EPS = float(np.finfo(np.float64).eps)


def matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """``start:step:stop`` with MATLAB's rounding: the first half counts up from ``start``, the second
    half down from ``stop``, so ``0:0.05:1`` ends exactly at 1 and thresholds compare like the toolkit's."""
    count = int(round((stop - start) / step))
    values = np.empty(count + 1, dtype=np.float64)
    half = count // 2
    for k in range(half + (count % 2)):
        values[k] = start + k * step
        values[count - k] = stop - k * step
    if count % 2 == 0:
        values[half] = (start + stop) / 2.0
    return values


SUCCESS_THRESHOLDS = matlab_colon(0.0, 0.05, 1.0)            # 21 IoU thresholds, strict ">"
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)        # pixels, "<="
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0
PRECISION_INDEX = 20        # 20 px
NORM_PRECISION_INDEX = 20   # 0.2
OP50_INDEX, OP75_INDEX = 10, 15


@dataclass
class Curves:
    """Success, precision and normalized-precision curves as fractions (0..1)."""

    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.mean(self.success))

    @property
    def precision_at_20(self) -> float:
        return float(self.precision[PRECISION_INDEX])

    @property
    def norm_precision_at_02(self) -> float:
        return float(self.norm_precision[NORM_PRECISION_INDEX])

    @property
    def op50(self) -> float:
        return float(self.success[OP50_INDEX])

    @property
    def op75(self) -> float:
        return float(self.success[OP75_INDEX])

    def summary(self) -> dict[str, float]:
        """The headline numbers in percent."""
        return {
            "auc": 100.0 * self.auc,
            "precision": 100.0 * self.precision_at_20,
            "norm_precision": 100.0 * self.norm_precision_at_02,
            "op50": 100.0 * self.op50,
            "op75": 100.0 * self.op75,
        }


def empty_curves() -> Curves:
    """All-NaN curves: what an average over no sequence is."""
    return Curves(np.full(len(SUCCESS_THRESHOLDS), np.nan), np.full(len(PRECISION_THRESHOLDS), np.nan),
                  np.full(len(NORM_PRECISION_THRESHOLDS), np.nan))


@dataclass
class Average:
    """Curves averaged over sequences, with how many sequences entered each curve."""

    curves: Curves
    num_sequences: int
    used: dict[str, int] = field(default_factory=dict)


def average_official(per_sequence: list[Curves]) -> Average:
    """The toolkits' ``plot_draw_save``: per curve type, drop sequences whose curve sums to <= eps,
    then average the rest with equal weight."""

    def mean_of(rows: list[np.ndarray], length: int) -> tuple[np.ndarray, int]:
        if not rows:
            return np.full(length, np.nan), 0
        table = np.vstack(rows)
        keep = table.sum(axis=1) > MATLAB_EPS
        if not keep.any():
            return np.full(length, np.nan), 0
        return table[keep].mean(axis=0), int(keep.sum())

    success, n_success = mean_of([c.success for c in per_sequence], len(SUCCESS_THRESHOLDS))
    precision, n_precision = mean_of([c.precision for c in per_sequence], len(PRECISION_THRESHOLDS))
    norm, n_norm = mean_of([c.norm_precision for c in per_sequence], len(NORM_PRECISION_THRESHOLDS))
    return Average(Curves(success, precision, norm), len(per_sequence),
                   {"success": n_success, "precision": n_precision, "norm_precision": n_norm})


def average_plain(per_sequence: list[Curves]) -> Average:
    """pytracking's ``get_auc_curve``/``get_prec_curve``: a plain mean over every scored sequence."""
    if not per_sequence:
        return Average(empty_curves(), 0, {"success": 0, "precision": 0, "norm_precision": 0})
    curves = Curves(
        np.mean([c.success for c in per_sequence], axis=0),
        np.mean([c.precision for c in per_sequence], axis=0),
        np.mean([c.norm_precision for c in per_sequence], axis=0),
    )
    count = len(per_sequence)
    return Average(curves, count, {"success": count, "precision": count, "norm_precision": count})
