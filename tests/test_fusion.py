"""Parts of the fusion module: appearance memory, Kalman prior, grounding schedule, candidate
association, and verification on a real distractor case (the two pedestrians of Crossing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chattracker.fusion.appearance import AppearanceMemory, describe_crop, similarity
from chattracker.fusion.association import CandidateAssociation
from chattracker.fusion.motion import BoxKalman
from chattracker.fusion.schedule import GroundingSchedule
from chattracker.fusion.semantic import ground, search_region
from chattracker.fusion.verification import Candidate, VerificationConfig, Verifier
from chattracker.types import Box
from chattracker.video import list_images, read_image
from tests.helpers import real_sequences


@pytest.fixture(scope="module")
def crossing(shared_data):
    sequence = real_sequences(shared_data)["Crossing"]
    files = list_images(sequence.frames)
    return {i: read_image(files[i]) for i in (0, 10, 20, 30, 40, 50)}, sequence.ground_truth


@pytest.fixture(scope="module")
def detections_at_50(crossing, weights_env):
    from chattracker.grounding.yolox import YoloxGrounder

    frames, _ = crossing
    grounder = YoloxGrounder()
    return grounder, ground(grounder, frames[50], ["person"], ["car"])


def test_appearance_memory_prefers_the_target_and_keeps_the_first_look(crossing, detections_at_50):
    frames, truth = crossing
    memory = AppearanceMemory(size=3)
    assert memory.add(frames[0], Box.from_any(truth[0]))
    same = memory.score(frames[0], Box.from_any(truth[0]))
    assert same == pytest.approx(1.0, abs=1e-5)
    target_later = memory.score(frames[50], Box.from_any(truth[50]))
    road = memory.score(frames[50], Box(250, 180, 17, 50))  # empty street, same size
    assert target_later > road
    for index in (10, 20, 30, 40):
        memory.add(frames[index], Box.from_any(truth[index]))
    assert len(memory) == 3 and memory.boxes[0] == Box.from_any(truth[0])  # first look never evicted
    assert memory.boxes[-1] == Box.from_any(truth[40])
    assert describe_crop(frames[0], Box(-50, -50, 10, 10)) is None  # outside the frame: no feature
    a, b = describe_crop(frames[0], Box.from_any(truth[0])), describe_crop(frames[10], Box.from_any(truth[10]))
    assert 0.0 <= similarity(a, b) <= 1.0


def test_kalman_follows_constant_motion_and_flags_a_jump():
    kalman = BoxKalman(Box(100, 100, 20, 40))
    for step in range(1, 15):
        kalman.predict()
        kalman.update(Box(100 + 3 * step, 100 + step, 20, 40))
    predicted = kalman.predict()
    assert predicted.center == pytest.approx((100 + 3 * 15 + 10, 100 + 15 + 20), abs=2.0)
    assert kalman.distance(Box(100 + 3 * 15, 115, 20, 40)) < 0.2
    assert kalman.distance(Box(10, 10, 20, 40)) > 2.0  # a jump of several target sizes
    assert kalman.distance(Box(145, 115, 40, 80)) > 1.0  # a 4x size change


def test_schedule_is_periodic_and_pulled_forward_by_triggers_with_a_cooldown():
    schedule = GroundingSchedule(every=10, cooldown=3, low_score=0.5, motion_gate=1.0)
    reasons = {i: schedule.due(i, 0.9, 0.1) for i in range(1, 31)}
    assert [i for i, r in reasons.items() if r] == [10, 20, 30]
    schedule.reset(0)
    low = [i for i in range(1, 12) if schedule.due(i, 0.2, 0.0)]
    assert low == [3, 6, 9]  # low confidence: every `cooldown` frames, not every frame
    schedule.reset(0)
    assert schedule.due(1, 0.9, 5.0) is None and schedule.due(3, 0.9, 5.0) == "motion"


def test_association_keeps_identities_of_two_lookalikes_with_lap():
    association = CandidateAssociation()
    first = association.update([Box(10, 10, 20, 40), Box(200, 10, 20, 40)])
    second = association.update([Box(206, 12, 20, 40), Box(14, 11, 20, 40), Box(400, 300, 20, 40)])
    assert second[0].identity == first[1].identity and second[1].identity == first[0].identity
    assert second[0].hits == 2 and second[2].hits == 1 and second[2].identity not in {t.identity for t in first}


def _verify_on_frame_50(crossing, detections_at_50, base_box: Box, base_score: float):
    """Scores and decision at frame 51, with a memory and a motion prior built from the target's track."""
    frames, truth = crossing
    grounder, grounded = detections_at_50
    memory = AppearanceMemory()
    memory.add(frames[0], Box.from_any(truth[0]))
    kalman = BoxKalman(Box.from_any(truth[0]))
    for index in range(1, 51):
        kalman.predict()
        kalman.update(Box.from_any(truth[index - 1]))
    prior = kalman.predict()
    verifier = Verifier(VerificationConfig())
    base = Candidate(base_box, "base", 0.0)
    proposals = [Candidate(b, label, s, persistent=True) for b, s, label in grounded.foreground]
    verifier.score(frames[50], [base, *proposals], memory, prior, [b for b, _, _ in grounded.background],
                   kalman.distance)
    return verifier, base, proposals, memory, truth


def test_verification_recovers_the_target_from_the_other_pedestrian(crossing, detections_at_50):
    frames, truth = crossing
    _, grounded = detections_at_50
    target = Box.from_any(truth[50])
    # YOLOX finds both real pedestrians of frame 51.
    assert len(grounded.foreground) >= 2
    other = next(b for b, _, _ in grounded.foreground if b.iou(target) < 0.1)
    verifier, base, proposals, memory, _ = _verify_on_frame_50(crossing, detections_at_50, other, 0.9)
    on_target = max(proposals, key=lambda p: p.box.iou(target))
    assert on_target.total > base.total + 0.3  # motion and appearance both favour the real target
    decision = verifier.decide(base, proposals, 0.9, memory)
    assert decision.reinitialize and decision.box.iou(target) > 0.5
    assert "implausible motion" in decision.reason


def test_verification_keeps_a_good_base_box_despite_the_distractor(crossing, detections_at_50):
    frames, truth = crossing
    target = Box.from_any(truth[50])
    verifier, base, proposals, memory, _ = _verify_on_frame_50(crossing, detections_at_50, target, 0.9)
    decision = verifier.decide(base, proposals, 0.9, memory)
    assert not decision.reinitialize and decision.box is target and decision.confirmed


def test_random_oracle_and_base_selections(crossing, detections_at_50):
    frames, truth = crossing
    _, grounded = detections_at_50
    target = Box.from_any(truth[50])
    other = next(b for b, _, _ in grounded.foreground if b.iou(target) < 0.1)
    _, base, proposals, memory, _ = _verify_on_frame_50(crossing, detections_at_50, other, 0.9)
    oracle = Verifier(VerificationConfig(selection="oracle")).decide(base, proposals, 0.9, memory, truth=target)
    assert oracle.box.iou(target) > 0.5 and oracle.reinitialize
    with pytest.raises(ValueError, match="ground truth"):
        Verifier(VerificationConfig(selection="oracle")).decide(base, proposals, 0.9, memory)
    assert Verifier(VerificationConfig(selection="base")).decide(base, proposals, 0.9, memory).box is other
    picks = [Verifier(VerificationConfig(selection="random", seed=s)).decide(base, proposals, 0.9, memory).box
             for s in range(12)]
    assert len({b.to_xyxy() for b in picks}) >= 2  # random really varies with the seed ...
    again = [Verifier(VerificationConfig(selection="random", seed=s)).decide(base, proposals, 0.9, memory).box
             for s in range(12)]
    assert picks == again  # ... and is reproducible


def test_search_region_is_square_clipped_and_at_least_the_minimum():
    region = search_region(Box(100, 100, 20, 50), 360, 240, scale=2.0, minimum=128)
    assert region.w == pytest.approx(128) and region.h == pytest.approx(128)
    thin = search_region(Box(300, 100, 100, 10), 640, 360, scale=2.0, minimum=0)
    assert thin.w == pytest.approx(200) and math.isclose(thin.h, 200)
    corner = search_region(Box(0, 0, 30, 30), 360, 240, scale=2.0, minimum=128)
    assert corner.x == 0 and corner.y == 0 and corner.w < 128


def test_scale_drift_is_corrected_only_by_a_persistent_same_shaped_proposal(crossing):
    frames, truth = crossing
    memory = AppearanceMemory()
    memory.add(frames[0], Box.from_any(truth[0]))
    target = Box.from_any(truth[50])
    grown = target.scaled(1.7)  # the base box grew around the target (area x2.9)
    verifier = Verifier(VerificationConfig())

    def decide(proposal: Candidate):
        base = Candidate(grown, "base", 0.0, appearance=0.9, motion=1.0, total=2.0)
        return verifier.decide(base, [proposal], 0.95, memory)

    tight = Candidate(target, "person", 0.7, appearance=0.8, motion=0.2, total=1.0, hits=5, identity=7)
    assert not decide(tight).reinitialize  # one round inside the grown box may be a partial detection
    decision = decide(tight)  # the second round in a row: the base box drifted
    assert decision.reinitialize and decision.keep_size and decision.box is target
    assert decision.reason == "recovered (scale drift)"
    verifier.reset()
    upper_half = Box(target.x, target.y, target.w, target.h / 2)  # a partial detection: another shape
    for _ in range(3):
        assert not decide(Candidate(upper_half, "person", 0.7, appearance=0.8, total=1.0, hits=3, identity=8)).reinitialize
    unsure = Candidate(target, "person", 0.3, appearance=0.8, total=1.0, hits=3, identity=9)
    for _ in range(3):
        assert not decide(unsure).reinitialize  # the grounder is not confident
