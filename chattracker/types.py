"""Data types shared by every part of ChatTracker (the contracts of DESIGN.md section 3).

Conventions, stated once: frames are HxWx3 ``uint8`` numpy arrays in **RGB** order; boxes are
``x, y, w, h`` floats in pixels with (x, y) the top-left corner. Conversion from OpenCV's BGR
happens only at the edges (video readers and writers, OpenCV tracker adapters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

Frame = np.ndarray  # HxWx3 uint8 RGB


@dataclass(frozen=True)
class Box:
    """Axis-aligned box ``x, y, w, h`` in pixels, (x, y) = top-left corner."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        # numpy scalars (a row of np.loadtxt, a detector's output) become plain floats here, once, so every
        # comparison, trace and cache downstream holds JSON-ready Python numbers (np.bool_ is not JSON)
        for name in ("x", "y", "w", "h"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_any(cls, value: "Box | Sequence[float] | np.ndarray") -> "Box":
        if isinstance(value, Box):
            return value
        values = [float(v) for v in np.asarray(value, dtype=float).reshape(-1)]
        if len(values) != 4:
            raise ValueError(f"a box needs 4 numbers x,y,w,h, got {len(values)}")
        return cls(*values)

    @classmethod
    def from_xyxy(cls, x1: float, y1: float, x2: float, y2: float) -> "Box":
        return cls(float(x1), float(y1), float(x2 - x1), float(y2 - y1))

    @classmethod
    def parse(cls, text: str) -> "Box":
        """Parse ``"x,y,w,h"`` (commas, spaces or tabs)."""
        parts = [p for p in text.replace(",", " ").replace("\t", " ").split() if p]
        if len(parts) != 4:
            raise ValueError(f"expected a box as x,y,w,h, got {text!r}")
        try:
            return cls(*(float(p) for p in parts))
        except ValueError:
            raise ValueError(f"expected a box as four numbers x,y,w,h, got {text!r}") from None

    def to_list(self) -> list[float]:
        return [self.x, self.y, self.w, self.h]

    def to_xyxy(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    def is_valid(self) -> bool:
        return bool(np.isfinite(self.to_list()).all() and self.w > 0 and self.h > 0)

    def iou(self, other: "Box") -> float:
        ax1, ay1, ax2, ay2 = self.to_xyxy()
        bx1, by1, bx2, by2 = other.to_xyxy()
        iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
        ih = max(0.0, min(ay2, by2) - max(ay1, by1))
        inter = iw * ih
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clip(self, width: int, height: int) -> "Box":
        """The part of the box inside a ``width x height`` frame (may be empty)."""
        x1, y1, x2, y2 = self.to_xyxy()
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        return Box.from_xyxy(x1, y1, x2, y2)

    def scaled(self, factor: float) -> "Box":
        """Same centre, sides multiplied by ``factor``."""
        cx, cy = self.center
        w, h = self.w * factor, self.h * factor
        return Box(cx - w / 2.0, cy - h / 2.0, w, h)


@dataclass
class TrackResult:
    """One frame's tracker output: a box (``None`` when the tracker reports the target absent)
    and the tracker's own confidence (``None`` when it has none)."""

    box: Box | None
    score: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Tracker(Protocol):
    """What every tracker (adapter or the ChatTracker wrapper) implements."""

    name: str

    def initialize(self, frame: Frame, box: Box, text: str | None = None) -> None: ...

    def track(self, frame: Frame) -> TrackResult: ...


@dataclass
class Description:
    """A describer's output: foreground phrase, background noun list ("a. b. c") and the raw reply."""

    foreground: str
    background: str = ""
    raw: str = ""

    def background_phrases(self) -> list[str]:
        return [p.strip() for p in self.background.split(".") if p.strip()]


@dataclass
class Proposals:
    """A grounder's output for one image.

    ``boxes`` is ``(N, 4)`` in ``x, y, w, h``; ``labels[i]`` is the phrase that found box i;
    ``token_scores`` maps each phrase to an ``(N, T)`` box-by-word score matrix and its words
    (``None`` when the backend cannot score words).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    token_scores: dict[str, tuple[list[str], np.ndarray]] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ValueError("boxes, scores and labels must have the same length")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Proposals":
        return cls(np.zeros((0, 4)), np.zeros(0), [], None)

    def box(self, i: int) -> Box:
        return Box.from_any(self.boxes[i])
