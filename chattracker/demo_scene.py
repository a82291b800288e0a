"""The demo scene: wall clocks that the bundled YOLOX-Nano really detects (COCO class "clock",
scores 0.7-0.9 at these sizes), so the language side has something to find. Seeded, deterministic.

What happens (frame numbers 1-based, at the default 150 frames):

- The target is a green clock moving left to right.
- A blue clock of the same size comes down diagonally and passes in front of the target around
  frame 66: a crossing with a same-class look-alike that words tell apart ("green" vs "blue").
  NanoTrack v2 alone follows the blue clock from there on (a test checks it): its box grows over both
  clocks at the crossing and settles on the blue one as the pillar hides the green half (frames 81-106;
  with the pillar out of the way it settles on neither, measured).
- A bigger yellow clock hangs at the upper right: a look-alike that differs in colour and size.
- A pillar hides the target completely for 13 frames (frames 100-112), with partial occlusion
  either side; those frames are marked absent and not scored.

The paths are straight segments with a small vertical bob. The crossing was laid out so that the
base tracker switches (the first layout, two clocks crossing head-on, did not make NanoTrack v2
switch); nothing was adjusted to the wrapper's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from chattracker.types import Box, Frame

CLOCK_CLASS = "clock"  # the COCO class every clock here is detected as


@dataclass(frozen=True)
class Clock:
    """A wall clock moving along straight segments: ``path`` holds (share of the scene, cx, cy)
    waypoints, share 0 at the first frame and 1 at the last; a small vertical bob rides on it."""

    name: str
    rim: tuple[int, int, int]
    face: tuple[int, int, int]
    radius: int
    path: tuple[tuple[float, float, float], ...]
    bob: float = 3.0
    bob_phase: float = 0.0

    def box_at(self, t: int, num_frames: int) -> Box:
        share = t / max(num_frames - 1, 1)
        shares, xs, ys = (np.array(column, dtype=float) for column in zip(*self.path))
        cx = float(np.interp(share, shares, xs))
        cy = float(np.interp(share, shares, ys) + self.bob * np.sin(0.15 * t + self.bob_phase))
        r = self.radius
        return Box(cx - r, cy - r, 2.0 * r, 2.0 * r)


class DemoScene:
    """Renders frames lazily; ``ground_truth[i]`` is the target box, ``absent[i]`` when fully hidden."""

    def __init__(self, num_frames: int = 150, width: int = 480, height: int = 320, seed: int = 7,
                 pillar: tuple[int, int] = (280, 80)) -> None:
        """``pillar``: its left edge and width in pixels (other layouts are for tests of the wrapper's
        failure modes; the demo uses the default)."""
        self.num_frames, self.width, self.height = num_frames, width, height
        rng = np.random.default_rng(seed)
        noise = rng.uniform(0, 1, (height // 16, width // 16, 3))
        texture = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        self.background = np.clip(95 + 55 * texture, 0, 255).astype(np.uint8)
        for _ in range(10):  # static clutter: posters and boxes on the wall
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.rectangle(self.background, (x, y), (x + int(rng.integers(15, 50)), y + int(rng.integers(10, 40))),
                          tuple(int(c) for c in rng.integers(50, 190, 3)), -1)
        self.target = Clock("green clock", (30, 140, 50), (140, 220, 140), 24, ((0, 60, 190), (1, 430, 175)))
        self.distractors = [
            Clock("blue clock", (30, 60, 200), (130, 160, 240), 24, ((0, 120, 20), (0.45, 210, 186), (1, 290, 296)),
                  bob_phase=1.3),
            Clock("big yellow clock", (230, 200, 40), (250, 240, 180), 34, ((0, 420, 70), (1, 400, 78))),
        ]
        self.pillar = (pillar[0], 0, pillar[1], height)  # x, y, w, h: hides whatever passes behind it
        self.ground_truth = [self.target.box_at(t, num_frames) for t in range(num_frames)]
        px1, px2 = self.pillar[0], self.pillar[0] + self.pillar[2]
        self.absent = [b.x >= px1 and b.x + b.w <= px2 for b in self.ground_truth]

    def __len__(self) -> int:
        return self.num_frames

    def frame(self, t: int) -> Frame:
        canvas = self.background.copy()
        # The target first, so the blue clock passes in front of it at the crossing.
        for clock in (self.target, *self.distractors):
            _draw_clock(canvas, clock, clock.box_at(t, self.num_frames), t)
        x, y, w, h = self.pillar
        canvas[y:y + h, x:x + w] = (128, 128, 135)
        canvas[y:y + h, x:x + 6] = (100, 100, 106)  # a shaded edge so the pillar reads as one
        return canvas

    def __iter__(self):
        for t in range(self.num_frames):
            yield self.frame(t)

    def key_frames(self) -> dict[str, int]:
        """What happens -> frame index: the moments the picture strip shows."""
        crossing = self.distractors[0]
        gaps = [np.hypot(*np.subtract(self.ground_truth[t].center, crossing.box_at(t, self.num_frames).center))
                for t in range(self.num_frames)]
        meet = int(np.argmin(gaps))
        hidden = [t for t, absent in enumerate(self.absent) if absent] or [self.num_frames - 1]
        last = self.num_frames - 1
        moments = {"start": 0, "crossing": meet, "after the crossing": min(meet + 15, last),
                   "behind the pillar": hidden[len(hidden) // 2], "out again": min(hidden[-1] + 15, last), "end": last}
        return dict(sorted(moments.items(), key=lambda item: item[1]))

    def description(self) -> str:
        """What the scene contains, in words (for the README and the demo's summary)."""
        others = ", ".join(d.name for d in self.distractors)
        return (f"{self.num_frames} frames {self.width}x{self.height}: target {self.target.name}; "
                f"look-alikes {others}; a pillar hides the target for {sum(self.absent)} frames")


def _draw_clock(canvas: np.ndarray, clock: Clock, box: Box, t: int) -> None:
    cx, cy = (int(round(v)) for v in box.center)
    r = clock.radius
    cv2.circle(canvas, (cx, cy), r, clock.rim, -1, cv2.LINE_AA)
    cv2.circle(canvas, (cx, cy), int(r * 0.82), clock.face, -1, cv2.LINE_AA)
    ink = (20, 20, 20)
    for k in range(12):
        a = k * np.pi / 6
        inner, outer = 0.65 * r, 0.78 * r
        cv2.line(canvas, (int(cx + inner * np.cos(a)), int(cy + inner * np.sin(a))),
                 (int(cx + outer * np.cos(a)), int(cy + outer * np.sin(a))), ink, max(1, r // 15), cv2.LINE_AA)
    minute = 2 * np.pi * (t % 60) / 60 - np.pi / 2  # the hands turn, as on a real clock (sped up)
    cv2.line(canvas, (cx, cy), (int(cx + 0.55 * r * np.cos(minute)), int(cy + 0.55 * r * np.sin(minute))),
             ink, max(1, r // 10), cv2.LINE_AA)
    cv2.line(canvas, (cx, cy), (int(cx + 0.4 * r), cy), ink, max(1, r // 10), cv2.LINE_AA)
