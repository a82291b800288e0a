"""RPO loop logic with a deterministic word grounder and scripted describers (no models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chattracker.errors import ConfigError
from chattracker.mllm.errors import DescriberUnavailableError, ReplyParseError
from chattracker.rpo import RPOCache, RPOConfig, RPOResult, rpo_cache_key, run_rpo, run_rpo_cached
from chattracker.types import Box, Description
from tests.test_rpo_fakes import SCENE, TARGET, ScriptedChat, ScriptedDescriber, SceneObject, WordGrounder, image


def test_reflection_turns_negative_words_into_a_better_phrase():
    grounder = WordGrounder(SCENE)
    # "blue" first: the blue car and the blue-coated person outrank the target
    describer = ScriptedDescriber(["blue person", "red person"])
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=2))
    first, second = result.trace["rounds"]
    assert first["top1_iou"] < 0.5 and first["negative_words"] == ["blue"]
    assert "person" in first["positive_words"]
    feedback = describer.feedbacks[1]
    assert feedback.negative_words == ["blue"] and "person" in feedback.positive_words
    assert [a.foreground for a in feedback.history] == ["blue person"]
    assert result.description.foreground == "red person" and result.top1_iou == pytest.approx(1.0)
    assert second["grounding"]["boxes"][0]["positive"]
    assert second["negative_words"] == ["person"]  # "person" still finds the other person too
    assert result.iterations == [{"description": "blue person", "top1_iou": 0.0},
                                 {"description": "red person", "top1_iou": 1.0}]


def test_early_stop_once_only_the_target_is_found():
    describer = ScriptedDescriber(["red left", "unused", "unused"])
    result = run_rpo(image(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=3))
    assert len(result.trace["rounds"]) == 1 and len(describer.feedbacks) == 1


def test_never_worse_than_the_first_description_and_last_selection_for_ablation():
    grounder = WordGrounder(SCENE)
    config = RPOConfig(iterations=2, early_stop=False)
    best = run_rpo(image(), TARGET, ScriptedDescriber(["red coat", "blue coat"]), grounder, config)
    assert best.description.foreground == "red coat" and best.top1_iou == pytest.approx(1.0)
    assert best.trace["selected_round"] == 1
    last = run_rpo(image(), TARGET, ScriptedDescriber(["red coat", "blue coat"]), grounder,
                   RPOConfig(iterations=2, early_stop=False, selection="last"))
    assert last.description.foreground == "blue coat" and last.top1_iou == 0.0


def test_ties_keep_the_earliest_and_background_comes_from_the_chosen_round():
    grounder = WordGrounder(SCENE)
    describer = ScriptedDescriber([Description("red person", "car. person"), Description("left person", "")])
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=2, early_stop=False))
    assert result.description.foreground == "red person" and result.description.background == "car. person"
    assert result.trace["rounds"][0]["background_grounding"]["boxes"]


def test_unusable_reply_is_recorded_and_last_good_description_kept():
    grounder = WordGrounder(SCENE)
    describer = ScriptedDescriber(["person", ReplyParseError("no usable description", reply="@@##"), "coat"])
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=3, early_stop=False))
    assert result.ok and result.description.foreground in {"person", "coat"}
    failed = result.trace["rounds"][1]
    assert failed["error"].startswith("ReplyParseError") and failed["exchanges"][0]["reply"] == "@@##"
    assert result.trace["errors"] == ["round 2: ReplyParseError: no usable description"]
    # round 3 still got the feedback of round 1, the last good one
    assert [a.foreground for a in describer.feedbacks[2].history] == ["person"]


def test_nothing_usable_gives_a_clear_outcome_or_the_fallback():
    grounder = WordGrounder(SCENE)
    garbage = [ReplyParseError("no usable description", reply="x")] * 2
    result = run_rpo(image(), TARGET, ScriptedDescriber(garbage), grounder, RPOConfig(iterations=2))
    assert not result.ok and result.top1_iou == 0.0
    assert result.trace["error"] == "no round produced a usable description" and len(result.trace["errors"]) == 2
    rescued = run_rpo(image(), TARGET, ScriptedDescriber(garbage), grounder, RPOConfig(iterations=2),
                      fallback=ScriptedDescriber(["red person"]))
    assert rescued.ok and rescued.trace["rounds"][-1]["source"] == "fallback" and rescued.top1_iou == 1.0


def test_unreachable_backend_stops_the_loop():
    grounder = WordGrounder(SCENE)
    down = DescriberUnavailableError("cannot reach http://127.0.0.1:9")
    with pytest.raises(DescriberUnavailableError):
        run_rpo(image(), TARGET, ScriptedDescriber([down]), grounder, RPOConfig(iterations=3))
    describer = ScriptedDescriber([down, "never asked"])
    kept = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=3), initial_text="person in red coat")
    assert kept.description.foreground == "person in red coat" and len(describer.feedbacks) == 1
    assert "cannot reach" in kept.trace["errors"][0]


def test_initial_text_is_grounded_first_and_given_to_the_describer():
    grounder = WordGrounder(SCENE)
    describer = ScriptedDescriber(["red person"])
    # a wrong human annotation: it names the other person
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=1), initial_text=" blue  person ")
    zero = result.trace["rounds"][0]
    assert zero["source"] == "initial_text" and zero["description"]["foreground"] == "blue person"
    assert zero["top1_iou"] == 0.0
    feedback = describer.feedbacks[0]
    assert feedback.initial_text == "blue person" and feedback.history[0].foreground == "blue person"
    assert result.description.foreground == "red person" and result.trace["result"]["first_top1_iou"] == 0.0


def test_grounder_without_word_scores_gives_no_words_but_still_selects():
    grounder = WordGrounder(SCENE, with_word_scores=False)
    result = run_rpo(image(), TARGET, ScriptedDescriber(["blue person", "red"]), grounder, RPOConfig(iterations=2))
    assert result.trace["rounds"][0]["positive_words"] == [] and result.description.foreground == "red"


def test_chat_describer_trace_has_every_prompt_and_reply(tmp_path):
    grounder = WordGrounder(SCENE)
    replies = ['{"foreground": "blue person", "background": ["car"]}',
               'Sure! ```json\n{"foreground": "red person", "background": "car. tree"}\n``` done']
    describer = ScriptedChat(replies, image_max_side=320)
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=2))
    rounds = result.trace["rounds"]
    assert rounds[0]["exchanges"][0]["prompt"]["name"] == "describe"
    assert "50, 50, 20, 40" in rounds[0]["exchanges"][0]["prompt"]["user"]  # box in the 320-px image it saw
    reflect = rounds[1]["exchanges"][0]["prompt"]
    assert reflect["name"] == "reflect" and '"blue person" -> best box overlap 0.00' in reflect["user"]
    assert "Words that led the detector to other objects (avoid them, or add attributes that exclude those objects): blue" in reflect["user"]
    assert rounds[1]["exchanges"][0]["reply"] == replies[1]
    assert describer.images[0].shape == (240, 320, 3)
    assert result.description == Description("red person", "car. tree", raw=replies[1])
    json.dumps(result.trace)  # JSON-ready as it is


def test_chat_describer_asks_for_background_when_missing_and_survives_garbage():
    grounder = WordGrounder(SCENE)
    describer = ScriptedChat(['foreground: red person', 'no idea'])
    result = run_rpo(image(), TARGET, describer, grounder, RPOConfig(iterations=1))
    exchanges = result.trace["rounds"][0]["exchanges"]
    assert [e["prompt"]["name"] for e in exchanges] == ["describe", "background"]
    assert "no usable description" in exchanges[1]["error"] and result.description.background == ""
    assert result.description.foreground == "red person"


def test_cache_runs_once_and_key_depends_on_inputs(tmp_path):
    """Protects the cache key: every input that changes the result (pixels, box, describer, grounder, settings,
    text) gives another key, so a cached description is never served for another frame or scene."""
    grounder = WordGrounder(SCENE)
    cache = RPOCache(tmp_path / "rpo")
    frame = image()
    first = run_rpo_cached(cache, frame, TARGET, ScriptedDescriber(["red person"]), grounder, RPOConfig(iterations=1),
                           sequence="seq/1")
    again = run_rpo_cached(cache, frame, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=1), sequence="seq/1")
    assert again.description == first.description and again.trace == json.loads(json.dumps(first.trace))
    files = list((tmp_path / "rpo").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("seq_1-")
    key = rpo_cache_key(frame, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=1), sequence="seq/1")
    other_pixels = frame.copy()
    other_pixels[0, 0, 0] ^= 1  # one bit of one pixel
    other_scene = WordGrounder([SceneObject((0, 0, 5, 5), {"x"})])
    variants = {
        "pixels": rpo_cache_key(other_pixels, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=1), sequence="seq/1"),
        "box": rpo_cache_key(frame, Box(101, 100, 40, 80), ScriptedDescriber([]), grounder, RPOConfig(iterations=1), sequence="seq/1"),
        "grounder": rpo_cache_key(frame, TARGET, ScriptedDescriber([]), other_scene, RPOConfig(iterations=1), sequence="seq/1"),
        "config": rpo_cache_key(frame, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=2), sequence="seq/1"),
        "text": rpo_cache_key(frame, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=1), "text", "seq/1"),
    }
    assert all(variant != key for variant in variants.values()), [name for name, v in variants.items() if v == key]
    assert len(set(variants.values())) == len(variants)
    assert rpo_cache_key(frame, TARGET, ScriptedChat([]), grounder, RPOConfig()) != \
        rpo_cache_key(frame, TARGET, ScriptedChat([], image_max_side=512), grounder, RPOConfig())
    # and in use: another frame or another grounder asks the describer again instead of reusing the file
    for changed_frame, changed_grounder in ((other_pixels, grounder), (frame, WordGrounder(SCENE[1:] + SCENE[:1]))):
        asked = ScriptedDescriber(["red person"])
        run_rpo_cached(cache, changed_frame, TARGET, asked, changed_grounder, RPOConfig(iterations=1), sequence="seq/1")
        assert len(asked.feedbacks) == 1, "a cached result of another frame or grounder was served"
    assert len(list((tmp_path / "rpo").glob("*.json"))) == 3


def test_cache_key_follows_the_describers_source(tmp_path, monkeypatch):
    """Same version, same settings, the describer's module edited in the checkout: a new key, so the
    old code's descriptions are not served (measured: a bench kept the previous code's backgrounds)."""
    import chattracker.rpo as rpo

    source = tmp_path / "describer.py"
    source.write_text("# one version\n")
    monkeypatch.setattr(rpo.inspect, "getsourcefile", lambda cls: str(source))
    rpo._source_digest.cache_clear()
    frame, grounder = image(), WordGrounder(SCENE)
    before = rpo_cache_key(frame, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=1))
    source.write_text("# another version\n")
    rpo._source_digest.cache_clear()
    after = rpo_cache_key(frame, TARGET, ScriptedDescriber([]), grounder, RPOConfig(iterations=1))
    assert before != after
    assert rpo.code_digest(ScriptedDescriber([])) == rpo._source_digest(str(source))
    rpo._source_digest.cache_clear()


def test_numpy_box_and_settings_are_cached_and_reloaded(tmp_path):
    """Protects the trace/cache serialisation of what the API accepts: a box from np.loadtxt and settings from a
    numpy sweep (np.linspace thresholds) once crashed the cache write with 'Object of type bool is not JSON
    serializable'."""
    cache = RPOCache(tmp_path)
    box = Box(*np.array([[100.0, 100.0, 40.0, 80.0]], dtype=np.float32)[0])
    config = RPOConfig(iterations=1, positive_iou=np.linspace(0.3, 0.7, 5)[2], box_threshold=np.float32(0.25))
    for given in (box, np.array([100.0, 100.0, 40.0, 80.0]), (np.int64(100), np.int64(100), np.int64(40), np.int64(80))):
        result = run_rpo_cached(cache, image(), given, ScriptedDescriber(["red person"]), WordGrounder(SCENE), config,
                                sequence="numpy")
        assert result.ok and result.description.foreground == "red person"
        assert result.trace["rounds"][0]["grounding"]["boxes"][0]["positive"] is True
    [stored] = tmp_path.glob("*.json")  # one key: the three boxes are the same box
    reloaded = cache.get(json.loads(stored.read_text())["key"])
    assert reloaded.description.foreground == "red person" and reloaded.trace == json.loads(json.dumps(result.trace))
    assert reloaded.trace["config"]["positive_iou"] == 0.5 and reloaded.trace["box"] == [100.0, 100.0, 40.0, 80.0]


def test_cache_ignores_corrupt_files_and_does_not_store_failures(tmp_path, caplog):
    cache = RPOCache(tmp_path)
    cache.path("k").write_text("{not json")
    result = cache.get_or_run("k", lambda: RPOResult(Description("red person"), 1.0, {"rounds": []}))
    assert result.ok and "unreadable" in caplog.text
    assert cache.get("k").description.foreground == "red person"
    failed = cache.get_or_run("bad", lambda: RPOResult(Description(""), 0.0, {}))
    assert not failed.ok and not cache.path("bad").exists()


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown setting.*iteration"):
        RPOConfig.from_dict({"iteration": 3})
    with pytest.raises(ConfigError, match="selection"):
        RPOConfig(selection="random")
    with pytest.raises(ConfigError, match="positive_iou"):
        RPOConfig(positive_iou=1.5)
    assert RPOConfig.from_dict({"iterations": 5}).iterations == 5
