"""``chattracker.fusion.retarget``: moving a tracker's box without re-templating it, on real frames."""

from __future__ import annotations

import numpy as np

from chattracker.fusion.redetect import EXEMPLAR
from chattracker.fusion.embedding import context_crop
from chattracker.fusion.retarget import context_side, template_preserving_frame
from chattracker.types import Box
from chattracker.video import read_image
from chattracker_eval.datasets import load_dataset


def deer(shared_data):
    sequence = load_dataset("fusion_dev", shared_data).sequences.select(["OTB_Deer"])[0]
    return sequence, read_image(sequence.frames[0]), read_image(sequence.frames[40])


def test_the_new_box_holds_the_old_template_and_the_rest_of_the_frame_is_untouched(shared_data):
    sequence, first, later = deer(shared_data)
    source = Box.from_any(sequence.ground_truth[0])
    # Elsewhere in a later frame, at another size (the box a correction moves the tracker to).
    target = Box(120.0, 200.0, source.w * 0.8, source.h * 0.8)
    frame = template_preserving_frame(later, target, first, source)
    old = context_crop(first, source, EXEMPLAR).astype(float)
    new = context_crop(frame, target, EXEMPLAR).astype(float)
    other = context_crop(later, target, EXEMPLAR).astype(float)
    # The template a Siamese tracker takes at the new box is the old one up to resampling, and not what
    # the later frame holds there.
    assert np.abs(new - old).mean() < 2.0  # measured 0.68 (of 255)
    assert np.abs(other - old).mean() > 10 * np.abs(new - old).mean()  # measured 40.4
    half = context_side(target) / 2.0 + 3
    cx, cy = target.center
    outside = np.ones(later.shape[:2], dtype=bool)
    outside[int(cy - half): int(cy + half) + 1, int(cx - half): int(cx + half) + 1] = False
    assert np.array_equal(frame[outside], later[outside])
    assert frame.shape == later.shape and frame.dtype == later.dtype


def test_a_nanotrack_moved_this_way_keeps_following_the_target(shared_data, weights_env):
    """NanoTrack v2 started on frame 1, then moved at frame 41 to the truth with its template kept: at
    frame 42 it is on the deer (measured IoU with the truth 0.88), as a tracker with a template of the deer
    should be."""
    from chattracker_trackers.base import build_tracker

    sequence, first, later = deer(shared_data)
    source, truth = Box.from_any(sequence.ground_truth[0]), Box.from_any(sequence.ground_truth[40])
    tracker = build_tracker("nanotrack_v2")
    tracker.initialize(template_preserving_frame(later, truth, first, source), truth)
    result = tracker.track(read_image(sequence.frames[41]))
    assert result.box.iou(Box.from_any(sequence.ground_truth[41])) > 0.6
