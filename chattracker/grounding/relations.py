"""How well a box fits a position or size word among boxes of its kind (shared by the YOLOX grounder
and the attributes describer, so both judge "left" or "small" the same way)."""

from __future__ import annotations

import numpy as np

from chattracker.types import Box


def position_match(box: Box, peers: list[Box], where: str, width: int, height: int) -> float:
    """1 for the box furthest toward ``where`` among its peers, 0 for the furthest away."""
    cx, cy = box.center
    if len(peers) > 1:
        xs = [p.center[0] for p in peers]
        ys = [p.center[1] for p in peers]
        x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    else:
        x_lo, x_hi, y_lo, y_hi = 0.0, float(width), 0.0, float(height)
    fx = (cx - x_lo) / (x_hi - x_lo) if x_hi > x_lo else 0.5
    fy = (cy - y_lo) / (y_hi - y_lo) if y_hi > y_lo else 0.5
    fx, fy = float(np.clip(fx, 0, 1)), float(np.clip(fy, 0, 1))
    return {
        "left": 1.0 - fx,
        "right": fx,
        "top": 1.0 - fy,
        "bottom": fy,
        "center": 1.0 - min(1.0, 2.0 * float(np.hypot(fx - 0.5, fy - 0.5))),
    }[where]


def size_match(box: Box, peers: list[Box], size: str) -> float:
    """Log-area rank among peers: 1 for the biggest (``big``) or smallest (``small``) box."""
    areas = np.log([max(p.area, 1.0) for p in peers])
    if len(peers) < 2 or areas.max() - areas.min() < 1e-9:
        return 1.0  # a lone box is both the biggest and the smallest of its kind
    f = float(np.clip((np.log(max(box.area, 1.0)) - areas.min()) / (areas.max() - areas.min()), 0, 1))
    return f if size == "big" else 1.0 - f
