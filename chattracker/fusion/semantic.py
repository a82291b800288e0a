"""Semantic tracking: ground the foreground and background descriptions on a frame.

The grounder sees either the whole frame or an enlarged search region around the reference box;
the region is upsampled by the grounder's own resize, which is what lets a small target (a distant
airplane) be found at all by a small detector. A grounder with a ``ground_region`` method grounds
search regions with it (YOLOX: at a smaller input than whole frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from chattracker.grounding.base import Grounder
from chattracker.types import Box, Frame, Proposals


BACKGROUND_MARGIN = 0.2  # how much better a box must fit a background phrase to count against it


@dataclass
class GroundedFrame:
    """Foreground and background proposals of one grounding round (frame coordinates)."""

    foreground: list[tuple[Box, float, str]]
    background: list[tuple[Box, float, str]]
    region: Box


def search_region(box: Box, width: int, height: int, scale: float, minimum: float) -> Box:
    """A square around ``box``: ``scale`` times its longer side (or twice ``scale`` times its
    geometric-mean side for thin boxes), at least ``minimum`` pixels, clipped to the frame."""
    side = max(scale * max(box.w, box.h), 2.0 * scale * math.sqrt(max(box.area, 1.0)), minimum)
    cx, cy = box.center
    return Box(cx - side / 2.0, cy - side / 2.0, side, side).clip(width, height)


def ground(grounder: Grounder, frame: Frame, foreground: Sequence[str], background: Sequence[str],
           region: Box | None = None, min_score: float = 0.0) -> GroundedFrame:
    """Run the grounder once with all phrases and split its boxes into foreground and background."""
    height, width = frame.shape[:2]
    region_given = region is not None
    region = (region or Box(0.0, 0.0, float(width), float(height))).clip(width, height)
    x1, y1, x2, y2 = (int(round(v)) for v in region.to_xyxy())
    image = np.ascontiguousarray(frame[y1:y2, x1:x2])
    phrases = list(dict.fromkeys([*foreground, *[p for p in background if p not in foreground]]))
    # A grounder may ground search regions its own way (YOLOX: at a smaller input, ``ground_region``).
    method = getattr(grounder, "ground_region", grounder.ground) if region_given else grounder.ground
    proposals: Proposals = method(image, phrases) if image.size and phrases else Proposals.empty()
    fg_set = set(foreground)
    fg: list[tuple[Box, float, str]] = []
    bg: list[tuple[Box, float, str]] = []
    for i in range(len(proposals)):
        score = float(proposals.scores[i])
        if score < min_score:
            continue
        b = proposals.box(i)
        entry = (Box(b.x + x1, b.y + y1, b.w, b.h), score, proposals.labels[i])
        (fg if proposals.labels[i] in fg_set else bg).append(entry)
    # A box that both kinds of phrase found (same COCO class, say) is one object: it is background
    # evidence only when it fits the background's words clearly better ("the other airplane, parked
    # on the right") than the foreground's.
    bg = [entry for entry in bg
          if all(entry[0].iou(f[0]) < 0.9 or entry[1] >= f[1] + BACKGROUND_MARGIN for f in fg)]
    return GroundedFrame(fg, bg, Box(float(x1), float(y1), float(x2 - x1), float(y2 - y1)))


def merge_grounded(local: GroundedFrame, wide: GroundedFrame) -> GroundedFrame:
    """``local``'s proposals plus those of ``wide`` (a whole-frame round) that ``local`` lacks; the
    zoomed local ones are kept where both found an object (their boxes are finer)."""

    def extra(mine, theirs):
        return [entry for entry in theirs if all(entry[0].iou(other[0]) < 0.5 for other in mine)]

    return GroundedFrame(local.foreground + extra(local.foreground, wide.foreground),
                         local.background + extra(local.background, wide.background), wide.region)
