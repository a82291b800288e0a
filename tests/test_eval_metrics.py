"""The official protocol's rules one by one, the pytracking protocol, and a cross-check against an
independent frame-by-frame transcription of the MATLAB toolkit on perturbed real annotations."""

from __future__ import annotations

import numpy as np
import pytest

from chattracker_eval.metrics import SUCCESS_THRESHOLDS, Curves, average_official
from chattracker_eval.protocols import OfficialProtocol, PytrackingProtocol, ResultError, score_sequence
from chattracker_eval.textfile import MalformedFileError, read_boxes, read_flags
from tests import test_eval_reference as eval_reference

OFFICIAL = OfficialProtocol()


def curves(results, gt, absent=None) -> Curves:
    return score_sequence(OFFICIAL, np.asarray(results, float), np.asarray(gt, float), absent)


def errors(results, gt, absent=None):
    return OFFICIAL.frame_errors(np.asarray(results, float), np.asarray(gt, float), absent)


GT = np.array([[10, 10, 20, 20], [12, 10, 20, 20], [14, 10, 20, 20], [16, 10, 20, 20], [18, 10, 20, 20]], float)


def test_thresholds_follow_matlab_colon():
    assert len(SUCCESS_THRESHOLDS) == 21 and SUCCESS_THRESHOLDS[-1] == 1.0 and SUCCESS_THRESHOLDS[10] == 0.5
    assert SUCCESS_THRESHOLDS[3] == 3 * 0.05            # 0.15000000000000002, as MATLAB's 0:0.05:1
    assert SUCCESS_THRESHOLDS[17] == 1 - 3 * 0.05       # counted down from 1


def test_ground_truth_against_itself_is_20_of_21(shared_data):
    gt = read_boxes(shared_data / "otb_crossing/Crossing/groundtruth_rect.txt")   # tab-separated
    result = curves(gt, gt)
    assert round(100 * result.auc, 2) == 95.24
    assert result.precision_at_20 == pytest.approx(1.0) and result.norm_precision_at_02 == pytest.approx(1.0)


def test_cascading_repair_of_nan_and_nonpositive_sizes():
    results = GT.copy()
    results[2] = [np.nan, 10, 20, 20]
    results[3] = [16, 10, 0, 20]       # zero width -> previous row, which is itself the repaired row 2
    results[4] = [18, 10, 20, -5]      # negative height
    e = errors(results, GT)
    # rows 2, 3, 4 all become row 1 ([12, 10, 20, 20]); IoU against a gt shifted by 2, 4, 6 px.
    expected = [1.0, 1.0, 18 * 20 / (800 - 18 * 20), 16 * 20 / (800 - 16 * 20), 14 * 20 / (800 - 14 * 20)]
    np.testing.assert_allclose(e.iou, expected)


def test_frame_one_is_ground_truth_but_repair_copies_the_raw_first_row():
    results = GT.copy()
    results[0] = [100, 100, 20, 20]    # far away: replaced by the ground truth for scoring
    results[1] = [np.nan] * 4          # repaired from the RAW first row, as the toolkit does
    e = errors(results, GT)
    assert e.iou[0] == 1.0 and e.iou[1] == 0.0


def test_matlab_nan_semantics_in_overlap_and_repair():
    results = GT.copy()
    results[0] = [np.nan, 10, 20, 20]   # a raw first row with NaN x reaches frame 2 through the repair
    results[1] = [np.nan] * 4
    # MATLAB's min/max skip NaN, so the x-overlap becomes the ground truth's full width: IoU 1.
    assert errors(results, GT).iou[1] == 1.0
    gt = GT.copy()
    gt[2] = [np.nan, 10, 20, 20]        # no repair where the ground-truth row has NaN ...
    results = GT.copy()
    results[2] = [0, 0, 0, 0]
    results[3] = [np.nan] * 4           # ... so frame 4 inherits the unrepaired zero row
    e = errors(results, gt)
    assert e.iou[2] == -1 and e.iou[3] == 0.0
    single = curves(GT[:1], GT[:1])      # the toolkit divides by N + eps
    assert single.success[0] == 1 / (1 + np.finfo(float).eps) < 1.0


def test_long_results_are_cut_and_short_ones_are_an_error():
    long = np.vstack([GT, [[0, 0, 5, 5]] * 3])
    assert curves(long, GT).auc == curves(GT, GT).auc
    with pytest.raises(ResultError, match="4 rows but the ground truth has 5"):
        curves(GT[:4], GT)


def test_absent_frames_are_removed_but_stay_in_the_denominator():
    absent = np.array([0, 0, 1, 1, 0])
    result = curves(GT, GT, absent)
    assert result.success[0] == pytest.approx(3 / 5)
    assert result.precision[0] == pytest.approx(3 / 5)


def test_invalid_ground_truth_fails_success_and_passes_precision():
    gt = GT.copy()
    gt[3] = [0, 10, 20, 20]            # x = 0 counts as invalid (all four must be > 0)
    e = errors(GT, gt)
    assert e.iou[3] == -1 and e.center[3] == -1 and e.norm_center[3] == -1
    result = curves(GT, gt)
    assert result.success[0] == pytest.approx(4 / 5) and result.precision[0] == pytest.approx(1.0)


def test_strict_success_and_inclusive_precision():
    gt = np.array([[10, 10, 20, 20], [10, 10, 20, 20]], float)
    results = np.array([[10, 10, 20, 20], [10, 10, 10, 20]], float)   # IoU exactly 0.5
    result = curves(results, gt)
    assert result.success[10] == pytest.approx(0.5)            # 0.5 > 0.5 is false
    assert result.success[9] == pytest.approx(1.0)
    shifted = np.array([[10, 10, 20, 20], [13, 14, 20, 20]], float)   # center error exactly 5 px
    assert curves(shifted, gt).precision[5] == pytest.approx(1.0)
    assert curves(shifted, gt).precision[4] == pytest.approx(0.5)


def test_centers_use_w_minus_one_and_normalized_error_divides_by_gt_size():
    gt = np.array([[10, 10, 20, 40], [10, 10, 20, 40]], float)
    results = np.array([[10, 10, 20, 40], [10, 10, 22, 40]], float)   # center moves by 1 px in x
    e = errors(results, gt)
    assert e.center[1] == pytest.approx(1.0) and e.norm_center[1] == pytest.approx(1 / 20)


def test_average_drops_all_zero_sequences_and_weights_equally():
    ok = Curves(np.full(21, 0.5), np.full(51, 0.5), np.full(51, 0.5))
    zero = Curves(np.zeros(21), np.zeros(51), np.full(51, 0.2))
    other = Curves(np.full(21, 0.1), np.full(51, 0.1), np.full(51, 0.1))
    result = average_official([ok, zero, other])
    assert result.curves.auc == pytest.approx(0.3)                     # zero success curve left out
    assert result.curves.norm_precision_at_02 == pytest.approx(0.8 / 3)  # but kept where its curve is not zero
    assert result.used == {"success": 2, "precision": 2, "norm_precision": 3}


def test_delimiters_and_malformed_files(tmp_path):
    expected = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], float)
    for name, text in {"comma": "1,2,3,4\n5,6,7,8\n", "tab": "1\t2\t3\t4\n5\t6\t7\t8", "space": "1 2 3 4\r\n5 6 7 8\r\n\n",
                       "mixed": "1, 2, 3, 4\n5,6 ,7,8,\n"}.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        np.testing.assert_array_equal(read_boxes(path), expected)
    nan = tmp_path / "nan.txt"
    nan.write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n")
    assert np.isnan(read_boxes(nan)[1]).all()
    flags = tmp_path / "flags.txt"
    flags.write_text("0 \n1 \n0 \n")                                   # TNL2K absent style
    np.testing.assert_array_equal(read_flags(flags), [0, 1, 0])
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(MalformedFileError, match="bad.txt: line 2"):
        read_boxes(bad)
    short = tmp_path / "short.txt"
    short.write_text("1,2,3\n")
    with pytest.raises(MalformedFileError, match="short.txt: line 1 has 3"):
        read_boxes(short)


def test_pytracking_rules():
    lasot = PytrackingProtocol("lasot")
    with pytest.raises(ResultError, match="NaN or negative"):
        lasot.frame_errors(np.vstack([GT[:4], [[1, 1, -2, 3]]]), GT, None)
    with pytest.raises(ResultError, match="4 rows"):
        lasot.frame_errors(GT[:4], GT, None)
    padded = PytrackingProtocol("tnl2k").frame_errors(GT[:4], GT, None)   # non-LaSOT: zero-padded
    assert padded.iou[4] == 0.0
    absent = np.array([0, 0, 1, 0, 0])
    e = lasot.frame_errors(GT, GT, absent)
    assert e.iou[2] == -1 and e.center[2] == np.inf and e.norm_center[2] == np.inf and e.denominator == 5
    e = PytrackingProtocol("tnl2k").frame_errors(GT, GT, absent)
    assert e.norm_center[2] == -1        # invalid frames pass normalized precision outside LaSOT


def _perturb(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tracker-like results: drift, scale noise, lost stretches, NaN/zero/negative rows, extra rows."""
    n = len(gt)
    size = np.maximum(gt[:, 2:], 1)
    noise = rng.normal(0, 0.15, (n, 2)) * size
    out = gt.copy()
    out[:, :2] += noise
    out[:, 2:] *= np.exp(rng.normal(0, 0.2, (n, 2)))
    if rng.random() < 0.5:
        out = np.round(out)                      # integer results make IoUs hit thresholds exactly
    start = rng.integers(0, n)
    out[start:start + rng.integers(0, n // 3 + 1), :2] += 300   # lost the target for a while
    for kind in range(4):
        rows = rng.choice(n, size=max(1, n // 50), replace=True)
        if kind == 0:
            out[rows] = np.nan
        elif kind == 1:
            out[rows, 2] = 0
        elif kind == 2:
            out[rows, 3] = -rng.random(len(rows)) * 10
        else:
            out[rows, 0] = np.nan
    if rng.random() < 0.2:
        out[0] = np.nan                           # a NaN first row propagates through the raw-row repair
    elif rng.random() < 0.3:
        out[0, 0] = np.nan                        # NaN x only: MATLAB's NaN-skipping min/max decide the IoU
        out[1] = np.nan
    if rng.random() < 0.3:
        out = np.vstack([out, rng.random((3, 4)) * 50])
    return out


def test_vectorised_official_matches_frame_by_frame_transcription(shared_data):
    rng = np.random.default_rng(7)
    cases = []
    lasot = shared_data / "lasot_toolkit/annos"
    for name in ["airplane-1", "electricfan-1", "lion-5", "tiger-6", "crocodile-10", "drone-7", "coin-6"]:
        cases.append((read_boxes(lasot / f"{name}.txt")[:1500], read_flags(lasot / "absent" / f"{name}.txt")[:1500]))
    tnl = shared_data / "tnl2k_toolkit/annos"
    for name in ["HaiBao_video_03_done", "advSamp_monitor_bikeyellow", "Plane_video_23", "Assian_video_Z03_done"]:
        gt = read_boxes(tnl / "gt_rect" / f"{name}.txt")[:1500]
        cases.append((gt, read_flags(tnl / "absent" / f"{name}.txt")))
    cases.append((np.array([[5, 5, 10, 10]] * 30, float), np.zeros(30)))
    mine_s, mine_p, mine_n, ref_s, ref_p, ref_n = [], [], [], [], [], []
    for gt, absent in cases:
        for _ in range(3):
            results = _perturb(gt, rng)
            ours = curves(results, gt, absent)
            success, precision = eval_reference.sequence_curves(results.tolist(), gt.tolist(), absent.tolist(), False)
            _, norm = eval_reference.sequence_curves(results.tolist(), gt.tolist(), absent.tolist(), True)
            # per sequence, in percent points
            assert np.max(np.abs(100 * ours.success - 100 * np.array(success))) < 1e-4
            assert np.max(np.abs(100 * ours.precision - 100 * np.array(precision))) < 1e-4
            assert np.max(np.abs(100 * ours.norm_precision - 100 * np.array(norm))) < 1e-4
            mine_s.append(ours.success), mine_p.append(ours.precision), mine_n.append(ours.norm_precision)
            ref_s.append(success), ref_p.append(precision), ref_n.append(norm)
    overall = average_official([Curves(s, p, n) for s, p, n in zip(mine_s, mine_p, mine_n)]).curves
    assert abs(100 * overall.auc - 100 * np.mean(eval_reference.average(ref_s))) < 1e-4
    assert abs(100 * overall.precision_at_20 - 100 * eval_reference.average(ref_p)[20]) < 1e-4
    assert abs(100 * overall.norm_precision_at_02 - 100 * eval_reference.average(ref_n)[20]) < 1e-4
