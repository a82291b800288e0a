"""Issue 36, cases 3-4: every numeric setting of every config section goes through the one settings check
(type, finiteness, declared range), walked field by field; empty config files and duplicate YAML keys are
errors naming the file."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from typing import Any, Callable

import pytest

from chattracker.cli import main
from chattracker.config import Range, SettingInfo, describe_settings, _declared_types, _split_annotated
from chattracker.errors import ConfigError
from tests.helpers import assert_one_error_line


def _optional(path: str) -> Any:
    """``module:attribute`` or None when it no longer exists (the fusion settings are being rewritten)."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _sections() -> list[tuple[str, Any, Callable[[dict], Any]]]:
    """(name, the class or callable declaring the settings, the real entry point a config goes through)."""
    from chattracker.grounding.base import build_grounder
    from chattracker.language_start import LanguageStartConfig
    from chattracker.mllm.base import DESCRIBERS
    from chattracker.mllm.hf import EngineOptions, HFDescriber, OffloadSettings
    from chattracker.rpo import RPOConfig
    from chattracker_eval.runner import Workers
    from chattracker_trackers.base import _REGISTRY, available_trackers, build_tracker

    sections = [
        ("rpo", RPOConfig, RPOConfig.from_dict),
        ("language_start", LanguageStartConfig, LanguageStartConfig.from_dict),
        ("describer openai", _optional("chattracker.mllm.openai:OpenAIDescriber"),
         lambda d: DESCRIBERS.build("openai", **d)),
        ("describer hf", HFDescriber, lambda d: DESCRIBERS.build("hf", model="/nonexistent-model", **d)),
        ("describer hf.offload", OffloadSettings, lambda d: DESCRIBERS.build(
            "hf", model="/nonexistent-model", device="cpu", offload={"store": "/nonexistent", "expert_budget": 1, **d})),
        ("describer hf.offload.options", EngineOptions, lambda d: DESCRIBERS.build(
            "hf", model="/nonexistent-model", device="cpu",
            offload={"store": "/nonexistent", "expert_budget": 1, "options": d})),
        ("describer attributes", _optional("chattracker.mllm.attributes:AttributesDescriber"),
         lambda d: DESCRIBERS.build("attributes", **d)),
        ("grounder yolox", _optional("chattracker.grounding.yolox:YoloxGrounder"),
         lambda d: build_grounder("yolox", **d)),
        ("grounder hf", _optional("chattracker.grounding.hf:HFGrounder"),
         lambda d: build_grounder("hf", model="/nonexistent-model", **d)),
        ("eval", Workers, lambda d: Workers(**d)),
    ]
    available_trackers()
    sections += [(f"tracker {name}", _REGISTRY[name], lambda d, name=name: build_tracker(name, **d))
                 for name in available_trackers()]
    fusion = _optional("chattracker.wrapper:FusionConfig")
    if fusion is not None:  # fusion and verification keys sit side by side in the `chattracker:` section
        sections.append(("chattracker", fusion, fusion.from_dict))
        verification = _optional("chattracker.fusion.decision:VerificationConfig")
        if verification is not None:
            sections.append(("chattracker verification", verification, fusion.from_dict))
    return [s for s in sections if s[1] is not None]


def _numeric(target: Any) -> list[tuple[str, set[type], Range | None]]:
    """(name, numeric types it accepts, declared range) of every int or float setting of ``target``."""
    found = []
    for name, annotation in _declared_types(target).items():
        base, marks = _split_annotated(annotation)
        options = set(getattr(base, "__args__", (base,)))
        kinds = {t for t in options if t in (int, float)}
        if kinds:
            found.append((name, kinds, next((m for m in marks if isinstance(m, Range)), None)))
    return found


def _outside(bounds: Range, kinds: set[type]) -> float | int:
    """A value just outside ``bounds`` of a type the setting accepts."""
    if bounds.low is not None:
        value = bounds.low if bounds.low_open else bounds.low - 1
    else:
        value = bounds.high if bounds.high_open else bounds.high + 1
    return int(value) if int in kinds and float not in kinds else float(value)


SECTIONS = _sections()
FIELDS = [(section, target, entry, *field) for section, target, entry in SECTIONS for field in _numeric(target)]


def test_every_section_with_numbers_is_walked():
    walked = {section for section, *_ in FIELDS}
    assert {"rpo", "language_start", "describer openai", "describer hf", "describer hf.offload",
            "describer attributes", "grounder yolox", "grounder hf", "eval"} <= walked
    # every class or function in the packages that declares a Range is one of the walked sections
    declared = {id(target) for _, target, _ in SECTIONS}
    for package in ("chattracker", "chattracker_eval", "chattracker_trackers"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if any(part in info.name for part in ("offload", "ray_backend", "toolkits")):
                continue  # the engine's internals (torch) and the toolkit bridges take no config section
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, lambda v: inspect.isclass(v) or inspect.isfunction(v)):
                if value.__module__ != info.name:
                    continue
                try:
                    ranged = any(info_.range_text for info_ in describe_settings(value))
                except (TypeError, ValueError, NameError):
                    continue
                assert not ranged or id(value) in declared, f"{info.name}.{value.__name__} declares ranges but is not walked"


@pytest.mark.parametrize("section, target, entry, name, kinds, bounds", FIELDS,
                         ids=[f"{f[0]}.{f[3]}" for f in FIELDS])
def test_nan_and_out_of_range_are_refused_by_name(section, target, entry, name, kinds, bounds):
    with pytest.raises(ConfigError) as caught:
        entry({name: math.nan})
    assert name in str(caught.value) and "\n" not in str(caught.value)
    assert "finite" in str(caught.value) or "must be an integer" in str(caught.value), caught.value
    if bounds is None:
        return
    value = _outside(bounds, kinds)
    with pytest.raises(ConfigError, match=rf"{name} must be in .*got {value!r}"):
        entry({name: value})


def test_a_declared_setting_has_a_reason():
    """The configuration reference is generated from Why(...): every ranged setting says why it exists."""
    missing = [f"{section}.{info.name}" for section, target, _ in SECTIONS for info in describe_settings(target)
               if info.range_text and not info.why and section not in ("chattracker", "chattracker verification")]
    assert not missing


def test_settings_built_in_code_are_checked_too():
    from chattracker.language_start import LanguageStartConfig
    from chattracker.rpo import RPOConfig

    with pytest.raises(ConfigError, match="rpo.positive_iou must be a finite number"):
        RPOConfig(positive_iou=math.nan)
    with pytest.raises(ConfigError, match=r"language_start.zoom_grid must be in \[1, 8\], got 0"):
        LanguageStartConfig(zoom_grid=0)
    assert isinstance(describe_settings(RPOConfig)[0], SettingInfo)


# ---------------------------------------------------------------- the files themselves (case 4), through the CLI

@pytest.mark.parametrize("text, message", [
    ("", "the config file is empty"),
    ("# only a comment\n", "the config file is empty"),
    ("tracker: kcf\nparams: {}\ntracker: mil\n", "duplicate key 'tracker' at line 3"),
    ("tracker: nanotrack_v2\nenhance: true\nchattracker:\n  search_scale: .nan\n", "finite number"),
    ("tracker: kcf\nlanguage_start:\n  min_score: 5\n", "language_start.min_score must be in [0, 1], got 5"),
], ids=["empty", "comment-only", "duplicate-key", "fusion-nan", "language-start-range"])
def test_track_config_file_errors_name_the_file(text, message, shared_data, weights_env, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    code = main(["track", str(shared_data / "otb_crossing/Crossing/img"), "--box", "205,151,17,50",
                 "--config", str(config), "--max-frames", "3", "--out", str(out), "--no-progress"])
    assert_one_error_line(capsys, code, str(config), message)
    assert not out.exists()


def test_describe_config_errors_name_the_file(shared_data, tmp_path, capsys):
    frame = shared_data / "otb_crossing/Crossing/img/0001.jpg"
    for text, message in (("rpo: {positive_iou: .nan}\n", "rpo.positive_iou must be a finite number"),
                          ("grounder: {name: yolox, params: {nms_threshold: 0}}\n",
                           "grounder yolox.nms_threshold must be in (0, 1], got 0"),
                          ("rpo: {}\nrpo: {iterations: 2}\n", "duplicate key 'rpo'")):
        config = tmp_path / "describe.yaml"
        config.write_text(text)
        code = main(["describe", str(frame), "--box", "205,151,17,50", "--config", str(config),
                     "--out", str(tmp_path / "o")])
        assert_one_error_line(capsys, code, str(config), message)
    assert not (tmp_path / "o").exists()
