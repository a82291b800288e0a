"""RPO's early stop (DESIGN.md section 1): the loop stops once the describer's phrase finds ONLY the target, i.e.
every grounded box is positive. A phrase that finds the target first but also a look-alike is exactly what reflection
is for: its look-alike's word becomes negative feedback and the describer is asked again."""

from __future__ import annotations

import pytest

from chattracker.rpo import RPOConfig, run_rpo
from tests.test_rpo_fakes import SCENE, TARGET, ScriptedDescriber, WordGrounder, image


def test_a_phrase_that_also_finds_a_look_alike_is_refined_not_accepted():
    grounder = WordGrounder(SCENE)
    # "red person": the target scores 1.0 (top box, positive); the blue-coated person scores 0.5 (negative)
    describer = ScriptedDescriber(["red person", "red left", "never asked"])
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=3))
    first, second = result.trace["rounds"]
    assert [box["positive"] for box in first["grounding"]["boxes"]] == [True, False]
    assert first["top1_iou"] == pytest.approx(1.0) and first["negative_words"] == ["person"]
    assert len(describer.feedbacks) == 2 and describer.script == ["never asked"]  # asked again, then stopped
    assert describer.feedbacks[1].negative_words == ["person"]
    assert [box["positive"] for box in second["grounding"]["boxes"]] == [True]  # only the target: stop here
    assert result.description.foreground == "red person"  # ties keep the earliest; both hit the target
    assert result.trace["selected_round"] == 1


def test_a_phrase_finding_only_the_target_stops_after_one_round_but_not_without_early_stop():
    stopped = ScriptedDescriber(["red left", "red person", "red coat"])
    run_rpo(image(), TARGET, stopped, WordGrounder(SCENE), RPOConfig(iterations=3))
    assert len(stopped.feedbacks) == 1
    kept_going = ScriptedDescriber(["red left", "red person", "red coat"])
    result = run_rpo(image(), TARGET, kept_going, WordGrounder(SCENE), RPOConfig(iterations=3, early_stop=False))
    assert len(kept_going.feedbacks) == 3 and len(result.trace["rounds"]) == 3


def test_a_look_alike_ranked_first_is_not_a_stop_either():
    # "blue coat": the look-alike (blue, coat) scores 1.0 above the target (coat) at 0.5
    describer = ScriptedDescriber(["blue coat", "red left"])
    result = run_rpo(image(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=3))
    assert [box["positive"] for box in result.trace["rounds"][0]["grounding"]["boxes"]][:2] == [False, True]
    assert len(describer.feedbacks) == 2 and result.description.foreground == "red left"


def test_a_repeated_phrase_stops_the_loop_whatever_its_case():
    describer = ScriptedDescriber(["blue person", "Blue Person", "never asked"])
    result = run_rpo(image(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=3))
    assert len(describer.feedbacks) == 2 and len(result.trace["rounds"]) == 2
    kept_going = ScriptedDescriber(["blue person", "red coat", "red left"])  # all different: every round runs
    run_rpo(image(), TARGET, kept_going, WordGrounder(SCENE), RPOConfig(iterations=3))
    assert len(kept_going.feedbacks) == 3


def test_a_phrase_that_finds_nothing_scores_zero_and_the_loop_goes_on():
    describer = ScriptedDescriber(["green hat", "red left"])
    result = run_rpo(image(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=2))
    first = result.trace["rounds"][0]
    assert first["grounding"]["boxes"] == [] and first["top1_iou"] == 0.0
    assert result.description.foreground == "red left" and result.top1_iou == 1.0


def test_config_bounds_are_inclusive_and_errors_name_the_key():
    from chattracker.errors import ConfigError

    RPOConfig(iterations=1, positive_iou=0.0, box_threshold=1.0, max_boxes=1)
    RPOConfig(iterations=100, positive_iou=1.0, box_threshold=0.0)
    for settings, message in (({"iterations": 0}, "rpo.iterations must be in [1, 100], got 0"),
                              ({"iterations": 101}, "rpo.iterations must be in [1, 100], got 101"),
                              ({"positive_iou": 1.5}, "rpo.positive_iou must be in [0, 1], got 1.5"),
                              ({"max_boxes": 0}, "rpo.max_boxes must be in [1, inf), got 0"),
                              ({"selection": "first"}, "rpo.selection must be one of best, last, got 'first'")):
        with pytest.raises(ConfigError) as caught:
            RPOConfig(**settings)
        assert str(caught.value) == message
