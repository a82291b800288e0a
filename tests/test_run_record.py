"""What `track` and `demo` say about a run: which tracker the flags choose, absent spans, the summary."""

import pytest

from chattracker.errors import InputError
from chattracker.run_record import RunRecord, absent_spans, choose, summary_lines
from chattracker.tracking import FrameRecord
from chattracker.types import Box
from chattracker.weights import WeightLookup, get_weight


@pytest.mark.parametrize("tracker, plain, enhance, expected", [
    (None, False, False, ("nanotrack_v2", True)),   # the default is the wrapper
    ("auto", False, False, ("nanotrack_v2", True)),
    (None, True, False, ("nanotrack_v2", False)),   # --plain: the base alone
    ("csrt", False, False, ("csrt", False)),        # --tracker NAME: that base alone
    ("csrt", False, True, ("csrt", True)),          # --enhance wraps any base
])
def test_flags_choose_base_and_wrapper(tracker, plain, enhance, expected):
    assert choose(tracker, plain, enhance) == expected


def test_plain_with_enhance_is_an_error():
    with pytest.raises(InputError, match="contradict"):
        choose("csrt", True, True)


def test_absent_spans_cover_each_run_of_missing_boxes():
    box = Box(0, 0, 1, 1)
    records = [FrameRecord(i, None if i in (2, 3, 4, 7) else box, None, 0.0) for i in range(9)]
    assert absent_spans(records) == [{"frame": 3, "event": "absent", "last": 5}, {"frame": 8, "event": "absent", "last": 8}]


def test_summary_of_a_plain_tracker_names_its_weights():
    class Plain:
        name = "nanotrack_v2"

    record = RunRecord({name: WeightLookup(get_weight(name), None, "bundled")
                        for name in ("nanotrack_v2_backbone", "nanotrack_v2_head")})
    assert summary_lines(Plain(), record) == [
        "components: tracker nanotrack_v2 (nanotrack_v2_backbone bundled, nanotrack_v2_head bundled)"]
