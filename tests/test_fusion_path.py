"""The decision as a tracklet path over rounds (``fusion.path``, ``fusion.decision``) and the learned
score's parameter file (``fusion.target_model``): switches need evidence that outweighs their cost, equal
evidence never flips the path, a wrong switch is undone when the evidence turns, and a missing or
corrupt parameter file is one clear error naming it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from chattracker.errors import ConfigError
from chattracker.fusion.candidates import BASE, Candidate
from chattracker.fusion.decision import Selector
from chattracker.fusion.features import FEATURES, RoundContext, candidate_features
from chattracker.fusion.path import TrackletPath
from chattracker.fusion.target_model import BUNDLED, load_model, manifest_path
from chattracker.types import Box


def run_path(path: TrackletPath, rounds: list[dict[int, float]]) -> list[int | None]:
    path.reset(1)
    return [path.update(evidence, set(evidence)) for evidence in rounds]


def test_equal_evidence_never_flips_the_path():
    for cost in (0.0, 1.0, 3.0):
        states = run_path(TrackletPath(cost, 0.8, -1.0, start=0.0), [{1: 0.5, 2: 0.5}] * 20)
        assert states == [1] * 20
    # Even with the target's tracklet started level with a newcomer and no cost at all.
    path = TrackletPath(0.0, 1.0, 0.0, start=0.0)
    path.reset(1)
    assert [path.update({1: -2.0, 2: -2.0}, {1, 2}) for _ in range(5)] == [1] * 5


def test_a_switch_needs_evidence_that_outweighs_its_cost():
    # One round of a strong rival against a cost of 3 (decay 1): no switch; round after round: a switch.
    states = run_path(TrackletPath(3.0, 1.0, -1.0, start=0.0), [{1: 0.0, 2: 2.0}, {1: 0.0, 2: 0.0}])
    assert states == [1, 1]
    states = run_path(TrackletPath(3.0, 1.0, -1.0, start=0.0), [{1: 0.0, 2: 2.0}] * 3)
    assert states[0] == 1 and states[-1] == 2


def test_a_wrong_switch_is_undone_when_the_evidence_turns():
    path = TrackletPath(1.0, 0.8, -1.0, start=0.0)
    misleading = [{1: -1.0, 2: 2.0}] * 3          # the base slid onto a look-alike that looks right
    turned = [{1: 2.5, 2: -2.0}] * 4               # the target found again, the look-alike now unlike it
    states = run_path(path, misleading + turned)
    assert states[2] == 2 and states[-1] == 1
    assert states.index(1, 3) <= 4  # back within two rounds of the evidence turning


def test_an_unseen_tracklet_stays_alive_and_can_be_taken_back():
    path = TrackletPath(2.0, 0.9, -0.5, start=0.0)
    path.reset(1)
    path.update({1: 2.0, 2: -2.0}, {1, 2})
    assert path.update({2: 1.0}, {1, 2}) == 1  # one round unseen: still the target (1.5 short of the cost 2)
    assert path.update({1: 2.0, 2: 1.0}, {1, 2}) == 1


def _candidate(box, source, identity, total, **fields):
    return Candidate(Box(*box), source, fields.pop("grounding", 0.8), identity=identity, total=total, **fields)


def test_the_selector_keeps_the_base_box_and_its_size_while_the_base_is_the_target():
    selector = Selector("path", TrackletPath(2.0, 0.8, -1.0))
    selector.reset(1)
    base = _candidate((100, 100, 40, 80), BASE, 1, 1.5)
    detection = _candidate((98, 96, 46, 90), "person", 3, 1.0)  # the same object, a looser box
    other = _candidate((300, 100, 40, 80), "person", 2, -1.0)
    decision = selector.decide([base, other, detection], {1, 2, 3}, confirmed=True)
    assert decision.box == base.box and not decision.reinitialize and decision.kind == "confirmed"


def test_oracle_random_and_base_selections_ablate_the_decision():
    base = _candidate((100, 100, 40, 80), BASE, 1, 0.0)
    other = _candidate((300, 100, 40, 80), "person", 2, 0.0)
    truth = Box(302, 101, 40, 80)
    oracle = Selector("oracle", TrackletPath()).decide([base, other], {1, 2}, False, truth)
    assert oracle.box == other.box and oracle.reinitialize
    with pytest.raises(ValueError, match="ground truth"):
        Selector("oracle", TrackletPath()).decide([base, other], {1, 2}, False)
    assert Selector("base", TrackletPath()).decide([base, other], {1, 2}, False).box == base.box
    picks = {Selector("random", TrackletPath(), seed=s).decide([base, other], {1, 2}, False).box for s in range(20)}
    assert picks == {base.box, other.box}
    with pytest.raises(ValueError, match="selection must be one of"):
        Selector("verify", TrackletPath())


def test_features_are_one_row_per_candidate_in_the_declared_order():
    base = _candidate((100, 100, 40, 80), BASE, 1, 0.0, appearance=0.9, hits=3)
    other = _candidate((300, 100, 20, 40), "redetect", 2, 0.0, appearance=0.4, embedding=np.ones(4))
    base.embedding = np.ones(4)
    rows = candidate_features([base, other], RoundContext(0.8, True, (40.0, 80.0)), {1: (5, 1.0)})
    assert rows.shape == (2, len(FEATURES))
    column = {name: rows[:, k] for k, name in enumerate(FEATURES)}
    assert "is_base" not in FEATURES and "iou_base" not in FEATURES  # the base is preferred by the path alone
    assert column["round_confidence"].tolist() == [0.8, 0.8] and column["redetect"].tolist() == [0, 1]
    assert column["appearance_margin"] == pytest.approx([0.5, -0.5])
    assert column["log_size"] == pytest.approx([0.0, np.log(4.0)])
    assert column["age"] == pytest.approx([np.log1p(5), 0.0]) and column["persistent"].tolist() == [1, 0]


def test_the_bundled_model_file_loads_with_numpy_and_matches_its_manifest():
    model = load_model()
    manifest = json.loads(manifest_path(BUNDLED).read_text())
    assert manifest["features"] == list(FEATURES) and manifest["file"] == BUNDLED.name
    assert set(model.scorers) >= {"default", "nanotrack_v2", "csrt"}
    for base in ("nanotrack_v2", "csrt"):  # the 26 development sequences and the demo scene at six training seeds
        names = manifest["trained_on"][base]
        assert len([n for n in names if not n.startswith("DemoScene_seed")]) == 26 and "DemoScene_seed7" not in names
    assert model.switch_cost >= 0 and 0 < model.decay <= 1
    logits = model.scorer_for("unregistered").logits(np.zeros((3, len(FEATURES))))
    assert logits.shape == (3,) and np.all(np.isfinite(logits))


def test_a_missing_or_corrupt_model_file_is_one_error_naming_it(tmp_path):
    copy = tmp_path / "scorer.json"
    shutil.copy(BUNDLED, copy)
    shutil.copy(manifest_path(BUNDLED), manifest_path(copy))
    assert load_model(copy).switch_cost == load_model().switch_cost
    with pytest.raises(ConfigError, match=f"{tmp_path / 'absent.json'}: fusion model file does not exist"):
        load_model(tmp_path / "absent.json")
    data = json.loads(copy.read_text())
    data["scorers"]["default"]["bias"] += 1.0
    copy.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=f"{copy}: fusion model file does not match the sha256"):
        load_model(copy)
    copy.write_text("{not json")
    with pytest.raises(ConfigError, match=f"{copy}: fusion model file is not valid JSON"):
        load_model(copy)


def test_a_model_file_of_other_features_is_refused(tmp_path):
    from chattracker.fusion.target_model import save_model

    model = load_model()
    path = tmp_path / "scorer.json"
    save_model(model, path, {"trained_on": {}})
    assert load_model(path).decay == model.decay
    content = json.loads(path.read_text())
    content["features"] = content["features"][:-1]
    path.write_text(json.dumps(content))
    manifest = json.loads(manifest_path(path).read_text())
    import hashlib

    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path(path).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="its features are not this version's"):
        load_model(path)


def test_the_wrapper_names_a_missing_model_file(weights_env, tmp_path):
    from chattracker.wrapper import build_chattracker
    from chattracker_trackers.base import build_tracker

    with pytest.raises(ConfigError, match="fusion model file does not exist"):
        build_chattracker(build_tracker("csrt"), {"model": str(tmp_path / "nothing.json"), "foreground": "person"})


@pytest.mark.shared
@pytest.mark.xfail(strict=True, reason="issue 35 done-when not met, measured: after the forced switch onto the other "
                   "jogger the path never switches back within the 74 frames left (the base's new tracklet wins "
                   "each round on motion and persistence; the cross-validated runs undid 0 of 8 switches around "
                   "NanoTrack v2, 4 of 30 around CSRT)")
def test_a_wrong_switch_forced_on_real_frames_is_undone(weights_env, tmp_path):
    """OTB Jogging-1, real frames: at frame 46 the path is forced onto the other jogger's tracklet (the base
    re-initialised there, as a wrong switch would do). The target's tracklet stays in the path, is searched
    around its last box, and the path switches back within a few rounds."""
    import math

    from chattracker.video import read_image
    from chattracker.wrapper import build_chattracker
    from chattracker_eval.datasets import load_dataset
    from chattracker_trackers.base import build_tracker

    sequence = load_dataset("fusion_dev", weights_env, extra="none").sequences["OTB_Jogging-1"]
    frames = [read_image(f) for f in sequence.frames[:120]]
    truth = [Box.from_any(b) for b in sequence.ground_truth[:120]]
    tracker = build_chattracker(build_tracker("nanotrack_v2"), {"cache_dir": str(tmp_path / "rpo"),
                                                                "foreground": "person", "redescribe": False})
    tracker.initialize(frames[0], truth[0])
    forced_at = None
    boxes = [truth[0]]
    for index in range(1, len(frames)):
        result = tracker.track(frames[index])
        boxes.append(result.box)
        record = result.info.get("round")
        if forced_at is None and index >= 45 and record:
            others = [c for c in record["candidates"][1:] if Box.from_any(c["box"]).iou(truth[index]) < 0.05]
            if not others:
                continue
            wrong = min(others, key=lambda c: math.dist(Box.from_any(c["box"]).center, truth[index].center))
            base_identity = record["candidates"][0]["identity"]
            # What a wrong switch leaves behind: the base on the other jogger, the path's state there.
            tracker.base.initialize(frames[index], Box.from_any(wrong["box"]))
            tracker.tracklets.follow(wrong["identity"])
            path = tracker.selector.path
            path.values[wrong["identity"]] = max(path.values.values()) + path.switch_cost
            path.state = wrong["identity"]
            tracker._left[base_identity] = tracker.grounding_rounds
            forced_at = index
    assert forced_at is not None, "no second jogger found after frame 46"
    back = [e for e in tracker.events if e["event"] == "reinitialize" and e["frame"] > forced_at + 1]
    assert back and back[0]["frame"] <= forced_at + 1 + 40, tracker.events  # within four rounds
    after = range(back[0]["frame"], len(frames))
    assert np.mean([boxes[i].iou(truth[i]) if boxes[i] else 0.0 for i in after]) > 0.5
