"""The demo scene: wall clocks that the bundled YOLOX-Nano really detects (COCO class "clock",
scores 0.7-0.9 at these sizes), so the language side has something to find. Seeded, deterministic.

What happens (frame numbers 1-based, at the default 150 frames):

- The target is a green clock moving left to right.
- A bigger blue clock hangs on the wall in its way (swaying a little): the target passes behind it
  from frame 10 to 56 and is hidden completely for frames 30-37. A same-class look-alike that words
  tell apart ("green" vs "blue", "small" vs "big"). NanoTrack v2 alone stays on the blue clock from
  there on (a test checks it); its box first grows over both clocks, then settles on the blue one.
- A big yellow clock hangs at the upper right: a look-alike that differs in colour and position.
- A pillar hides the target completely for 12 frames (frames 100-111), with partial occlusion
  either side.
- Frames where no pixel of the target shows (behind the blue clock or the pillar) are marked absent
  and not scored.

The look-alike was placed by what the base tracker does (ChatTracker had run on one other
position before, x 150 with the pillar at x 300; two of its rules were then changed for failures
seen on this scene, see the README): the first layouts (a blue clock crossing the target head-on,
or diagonally in front of it, or overtaking it) did not make NanoTrack v2 follow the look-alike
while the target was in view (the diagonal one only with the pillar's help). Of the hanging positions measured (x 120-180, radius
24-34, pillar at x 260-300, background seeds 1, 2, 3 and 7), radius 34 at x 140 with the pillar at
x 280 is the one where the base follows the blue clock for all 25 frames that the target shows
between the two clocks and the pillar, for both seeds measured there (7, the scene's seed before,
and 2). Twelve seeds, and what ChatTracker scores on each, are in the README. The older diagonal
layout stays (``PASSING_BLUE``) for tests of the wrapper's failure modes.
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


# The look-alike of the demo: a bigger blue clock hanging in the target's way.
HANGING_BLUE = Clock("big blue clock", (30, 60, 200), (130, 160, 240), 34, ((0, 140, 186), (1, 140, 186)),
                     bob_phase=1.3)
# The first demo's look-alike: a blue clock of the target's size coming down diagonally in front of it
# (frame 66). NanoTrack v2 grows over both and settles on neither unless the pillar hides the green half.
PASSING_BLUE = Clock("blue clock", (30, 60, 200), (130, 160, 240), 24, ((0, 120, 20), (0.45, 210, 186), (1, 290, 296)),
                     bob_phase=1.3)


class DemoScene:
    """Renders frames lazily; ``ground_truth[i]`` is the target box, ``absent[i]`` when fully hidden."""

    def __init__(self, num_frames: int = 150, width: int = 480, height: int = 320, seed: int = 7,
                 pillar: tuple[int, int] = (280, 80), lookalike: Clock | None = None) -> None:
        """``pillar``: its left edge and width in pixels; ``lookalike``: the clock in the target's way
        (default ``HANGING_BLUE``). Other layouts are for tests of the wrapper's failure modes; the
        demo uses the defaults."""
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
            lookalike or HANGING_BLUE,
            Clock("big yellow clock", (230, 200, 40), (250, 240, 180), 34, ((0, 420, 70), (1, 400, 78))),
        ]
        self.pillar = (pillar[0], 0, pillar[1], height)  # x, y, w, h: hides whatever passes behind it
        self.ground_truth = [self.target.box_at(t, num_frames) for t in range(num_frames)]
        self.absent = [self.visible_pixels(t) == 0 for t in range(num_frames)]

    def visible_pixels(self, t: int) -> int:
        """How many pixels of the target's disc show at frame ``t`` (the clocks drawn after it and the
        pillar cover it)."""
        def disc(clock: Clock) -> np.ndarray:
            mask = np.zeros((self.height, self.width), np.uint8)
            cx, cy = (int(round(v)) for v in clock.box_at(t, self.num_frames).center)
            cv2.circle(mask, (cx, cy), clock.radius, 1, -1)
            return mask.astype(bool)

        covered = np.zeros((self.height, self.width), bool)
        for clock in self.distractors:
            covered |= disc(clock)
        x, _, w, _ = self.pillar
        covered[:, x:x + w] = True
        return int((disc(self.target) & ~covered).sum())

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

    def crossing_frames(self) -> tuple[int, int]:
        """Frame indices where the target meets the look-alike (closest centres) and the first one after
        it where their discs no longer touch (the target in view again)."""
        crossing = self.distractors[0]
        gaps = [np.hypot(*np.subtract(self.ground_truth[t].center, crossing.box_at(t, self.num_frames).center))
                for t in range(self.num_frames)]
        meet = int(np.argmin(gaps))
        clear = next((t for t in range(meet, self.num_frames)
                      if gaps[t] > self.target.radius + crossing.radius), meet)
        return meet, clear

    def key_frames(self) -> dict[str, int]:
        """What happens -> frame index: the moments the picture strip shows."""
        meet, clear = self.crossing_frames()
        px1, px2 = self.pillar[0], self.pillar[0] + self.pillar[2]
        hidden = ([t for t, absent in enumerate(self.absent) if absent
                   and px1 <= self.ground_truth[t].x and self.ground_truth[t].x + self.ground_truth[t].w <= px2]
                  or [self.num_frames - 1])
        last = self.num_frames - 1
        moments = {"start": 0, "crossing": meet, "after the crossing": min(clear + 5, last),
                   "behind the pillar": hidden[len(hidden) // 2], "out again": min(hidden[-1] + 15, last), "end": last}
        return dict(sorted(moments.items(), key=lambda item: item[1]))

    def description(self) -> str:
        """What the scene contains, in words (for the README and the demo's summary)."""
        others = ", ".join(d.name for d in self.distractors)
        return (f"{self.num_frames} frames {self.width}x{self.height}: target {self.target.name}; "
                f"look-alikes {others}; the target is fully hidden for {sum(self.absent)} frames (not scored)")


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
