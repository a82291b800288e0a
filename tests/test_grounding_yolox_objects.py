"""The YOLOX grounder keeps one detection per object (no weights needed: the rule alone)."""

from __future__ import annotations

import numpy as np

from chattracker.grounding.yolox import SAME_OBJECT_IOU, Detections, _one_per_object
from chattracker.types import Box


def _reference(found: Detections, class_ids: tuple[int, ...]) -> list[int]:
    """The rule written plainly with ``Box.iou``: best score first, drop what overlaps a kept one."""
    rows = sorted((i for i in range(len(found.scores)) if found.class_ids[i] in class_ids), key=lambda i: -found.scores[i])
    kept: list[int] = []
    for i in rows:
        if all(Box.from_any(found.boxes[i]).iou(Box.from_any(found.boxes[k])) < SAME_OBJECT_IOU for k in kept):
            kept.append(i)
    return kept


def test_one_per_object_matches_the_plain_rule_on_crowds() -> None:
    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(0, 60))
        centres = rng.uniform(0, 200, (n, 2))
        sizes = rng.uniform(0, 40, (n, 2))
        boxes = np.concatenate([centres, sizes], axis=1)
        if n > 4:  # near-duplicates, exact duplicates and an empty box, as NMS leftovers of a crowd give
            boxes[1] = boxes[0] + rng.uniform(-2, 2, 4)
            boxes[2] = boxes[0]
            boxes[3, 2:] = 0.0
        found = Detections(boxes, rng.integers(0, 3, n), rng.uniform(0.2, 1.0, n), np.zeros((n, 80)))
        for classes in ((0,), (1, 2), (0, 1, 2), (5,)):
            assert _one_per_object(found, classes) == _reference(found, classes), (trial, classes)


def test_two_boxes_of_one_object_are_one_and_neighbours_stay_two() -> None:
    boxes = np.array([[0, 0, 10, 10], [0.5, 0, 10, 10], [20, 0, 10, 10]], dtype=float)
    found = Detections(boxes, np.zeros(3, int), np.array([0.5, 0.9, 0.7]), np.zeros((3, 80)))
    assert _one_per_object(found, (0,)) == [1, 2]  # the better of the pair, then the neighbour
