"""A small synthetic tracking scene that needs no download: one target, look-alike distractors
that cross its path, and an occluding pillar. Deterministic for a given seed."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from chattracker.types import Box, Frame


@dataclass
class SceneObject:
    """A textured ellipse moving on a smooth path; ``phase``/``speed`` shape its Lissajous orbit."""

    color: tuple[int, int, int]
    stripe: tuple[int, int, int]
    size: tuple[int, int]
    center: tuple[float, float]
    radius: tuple[float, float]
    speed: tuple[float, float]
    phase: tuple[float, float]

    def box_at(self, t: int) -> Box:
        cx = self.center[0] + self.radius[0] * np.sin(self.speed[0] * t + self.phase[0])
        cy = self.center[1] + self.radius[1] * np.sin(self.speed[1] * t + self.phase[1])
        w, h = self.size
        return Box(cx - w / 2, cy - h / 2, float(w), float(h))


class DemoScene:
    """Renders frames lazily; ``ground_truth[i]`` is the target box, ``absent[i]`` when hidden."""

    def __init__(self, num_frames: int = 150, width: int = 480, height: int = 320, seed: int = 7) -> None:
        self.num_frames, self.width, self.height = num_frames, width, height
        rng = np.random.default_rng(seed)
        noise = rng.uniform(0, 1, (height // 16, width // 16, 3))
        texture = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        self.background = np.clip(70 + 90 * texture, 0, 255).astype(np.uint8)
        for _ in range(12):  # static clutter
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.rectangle(self.background, (x, y), (x + int(rng.integers(10, 40)), y + int(rng.integers(10, 40))),
                          tuple(int(c) for c in rng.integers(40, 200, 3)), -1)
        # The target sweeps left to right; a look-alike passes close by on the left, the target then
        # goes behind the pillar, and a second look-alike waits near where it comes out.
        self.target = SceneObject((220, 40, 40), (250, 230, 230), (34, 40), (250, 170), (190, 40), (0.035, 0.06), (-np.pi / 2, 0.0))
        self.distractors = [
            SceneObject((205, 55, 50), (240, 210, 200), (34, 40), (150, 150), (25, 110), (0.03, 0.05), (0.0, -0.9)),
            SceneObject((215, 45, 60), (245, 225, 215), (30, 36), (400, 120), (20, 50), (0.05, 0.04), (1.0, 0.0)),
        ]
        self.pillar = (300, 0, 30, height)  # x, y, w, h: occludes whatever passes behind it
        self.ground_truth = [self.target.box_at(t) for t in range(num_frames)]
        px1, px2 = self.pillar[0], self.pillar[0] + self.pillar[2]
        self.absent = [b.x >= px1 and b.x + b.w <= px2 for b in self.ground_truth]

    def __len__(self) -> int:
        return self.num_frames

    def frame(self, t: int) -> Frame:
        canvas = self.background.copy()
        for obj in [*self.distractors, self.target]:
            _draw_object(canvas, obj, obj.box_at(t))
        x, y, w, h = self.pillar
        canvas[y:y + h, x:x + w] = (128, 128, 135)
        return canvas

    def __iter__(self):
        for t in range(self.num_frames):
            yield self.frame(t)


def _draw_object(canvas: np.ndarray, obj: SceneObject, box: Box) -> None:
    cx, cy = (int(round(v)) for v in box.center)
    axes = (int(box.w // 2), int(box.h // 2))
    cv2.ellipse(canvas, (cx, cy), axes, 0, 0, 360, obj.color, -1, cv2.LINE_AA)
    cv2.ellipse(canvas, (cx, cy), (axes[0], max(2, axes[1] // 4)), 0, 0, 360, obj.stripe, -1, cv2.LINE_AA)
    cv2.ellipse(canvas, (cx, cy), axes, 0, 0, 360, (30, 30, 30), 1, cv2.LINE_AA)
