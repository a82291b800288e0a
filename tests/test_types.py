import numpy as np
import pytest

from chattracker.types import Box, Proposals


def test_box_parse_accepts_commas_spaces_tabs():
    assert Box.parse("1,2,3,4") == Box(1, 2, 3, 4)
    assert Box.parse("1.5 2\t3, 4") == Box(1.5, 2, 3, 4)
    with pytest.raises(ValueError, match="x,y,w,h"):
        Box.parse("1,2,3")
    with pytest.raises(ValueError, match="four numbers"):
        Box.parse("1,2,a,4")


def test_box_iou_and_clip():
    a, b = Box(0, 0, 10, 10), Box(5, 0, 10, 10)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 5, 5)) == 0.0
    assert Box(-5, -5, 10, 10).clip(100, 100) == Box(0, 0, 5, 5)
    assert Box(2, 2, 4, 6).scaled(2.0) == Box(0, -1, 8, 12)


def test_proposals_validate_lengths():
    p = Proposals(np.array([[0, 0, 1, 1]]), [0.5], ["a"])
    assert len(p) == 1 and p.box(0) == Box(0, 0, 1, 1)
    with pytest.raises(ValueError):
        Proposals(np.zeros((2, 4)), [0.1], ["a"])
