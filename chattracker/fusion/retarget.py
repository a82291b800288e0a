"""Move a base tracker's box without changing what it looks for.

A tracker's only way to be told a new box is ``initialize(frame, box)``, which also takes a new
template from ``frame``: a box correction would re-template the tracker on whatever the corrected box
holds (a partly occluded target, a looser detector box), and a drifted template is worse than a
drifted box. ``template_preserving_frame`` builds the frame to initialise on instead: the current
frame with the context square around the template's source box (the region a Siamese tracker such
as NanoTrack crops its template from, the box padded by half its perimeter) pasted, rescaled, at the
corrected box. The tracker then takes the same template as before at the new place and size.
Measured around NanoTrack v2 on the 15 development sequences, a correction to the ground truth
every 10 frames this way bounds the gain at 60.95 -> 72.35 mean AUC (a full re-initialisation on the
ground truth: 75.64), so most of what a correction can give is in the box, not the template.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from chattracker.fusion.embedding import mean_colour
from chattracker.fusion.redetect import TemplateRedetector
from chattracker.types import Box, Frame


def context_side(box: Box) -> float:
    """Side of the square a Siamese tracker crops its template from (the box padded by half its
    perimeter on each axis)."""
    return TemplateRedetector.exemplar_side(box.w, box.h)


def template_preserving_frame(frame: Frame, box: Box, source: Frame, source_box: Box,
                              margin: float = 2.0) -> np.ndarray:
    """``frame`` with ``source``'s context square around ``source_box`` pasted (scaled by the ratio of
    the two context sides) so that its centre falls on ``box``'s centre."""
    scale = context_side(box) / context_side(source_box)
    (sx, sy), (cx, cy) = source_box.center, box.center
    warp = np.array([[scale, 0.0, cx - scale * sx], [0.0, scale, cy - scale * sy]])
    height, width = frame.shape[:2]
    half = context_side(box) / 2.0 + margin
    x0, y0 = max(0, int(math.floor(cx - half))), max(0, int(math.floor(cy - half)))
    x1, y1 = min(width, int(math.ceil(cx + half))), min(height, int(math.ceil(cy + half)))
    out = np.array(frame, copy=True)
    if x1 <= x0 or y1 <= y0:
        return out
    # Only the pasted square is warped (an affine map of a sub-window: shift the translation).
    shifted = warp.copy()
    shifted[:, 2] -= (x0, y0)
    # Where the source square left the source frame the tracker saw its padding, the frame's mean colour.
    patch = cv2.warpAffine(np.ascontiguousarray(source), shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=mean_colour(source))
    out[y0:y1, x0:x1] = patch
    return out
