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


def test_box_from_numpy_values_holds_python_floats():
    """Protects Box's conversion of numpy scalars: ``Box(*np.loadtxt(...)[0])`` is the natural call, and numpy
    values left in a box turn comparisons into np.bool_, which no JSON trace or cache can write."""
    row = np.array([205.0, 151.0, 17.0, 50.0])
    for box in (Box(*row), Box(*row.astype(np.float32)), Box(*row.astype(np.int64)), Box.from_any(row),
                Box.from_any(row.astype(np.float32).reshape(1, 4)), Box.from_any(tuple(row.astype(np.float16)))):
        assert box == Box(205.0, 151.0, 17.0, 50.0)
        assert all(type(v) is float for v in box.to_list()), [type(v) for v in box.to_list()]
        assert type(box.iou(Box(205, 151, 17, 50)) >= 0.5) is bool
