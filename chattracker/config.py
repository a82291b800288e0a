"""YAML configuration of a tracker run, validated with errors that say what to fix.

A config file looks like::

    tracker: nanotrack_v2        # a registered tracker name (`chattracker track --help` lists them)
    params: {}                   # keyword arguments of that tracker's factory
    enhance: false               # wrap it with the ChatTracker fusion module
    chattracker: {}              # fusion settings (see configs/chattracker.yaml)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import yaml

from chattracker.errors import ConfigError
from chattracker.types import Tracker

TRACKER_CONFIG_KEYS = {"tracker", "params", "enhance", "chattracker", "language_start"}


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take, declared once on the field:
    ``x: Annotated[float, Range(0.0, 1.0)] = 0.5``. ``None`` leaves a side open-ended; ``low_open`` /
    ``high_open`` exclude the bound itself. Every float is also checked to be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def text(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"


@dataclass(frozen=True)
class Why:
    """Why a setting exists and what was measured when its default was set (the configuration reference
    page is generated from these): ``x: Annotated[float, Range(0, 1), Why("...")] = 0.5``."""

    text: str


@dataclass(frozen=True)
class SettingInfo:
    """One declared setting, as the configuration reference shows it."""

    name: str
    type_text: str
    range_text: str
    default: Any
    why: str


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; missing file, bad syntax or a non-mapping is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if data is None:  # an empty file would silently run every default: most likely the wrong file
        raise ConfigError(f"{path}: the config file is empty (no settings); give a file with settings, or no --config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


class _DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping; plain YAML loaders keep the last one without a word."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (``tracker:`` twice)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                mark = key_node.start_mark
                raise _DuplicateKey(f"duplicate key {key!r} at line {mark.line + 1} (YAML would keep only the last)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_keys(section: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{section}: unknown setting(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(allowed)) or 'none'}")


def check_settings(section: str, data: Mapping[str, Any] | None, target: type | Callable[..., Any]) -> dict[str, Any]:
    """Check a settings mapping against the typed fields of a dataclass, or the typed parameters of a class's
    ``__init__`` or a function; returns the settings with ints widened to floats where a float is declared.

    Unknown keys and wrong types are one ``ConfigError`` naming ``section.key``. A bool is no number and a
    float is no int (``retries: 2.5`` is an error, not 2); unannotated or ``Any`` parameters take anything."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings, got {type(data).__name__}")
    declared = _declared_types(target)
    check_keys(section, dict(data), set(declared))
    checked = {}
    for key, value in data.items():
        expected, marks = _split_annotated(declared[key])
        ok, converted = _conform(value, expected)
        if not ok:
            raise ConfigError(f"{section}.{key} must be {_type_text(expected)}, got {value!r}")
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ConfigError(f"{section}.{key} must be a finite number, got {value!r}")
        bounds = next((m for m in marks if isinstance(m, Range)), None)
        if (bounds is not None and isinstance(converted, (int, float)) and not isinstance(converted, bool)
                and not bounds.contains(converted)):
            raise ConfigError(f"{section}.{key} must be in {bounds.text()}, got {value!r}")
        checked[key] = converted
    return checked


def check_instance(section: str, instance: Any) -> None:
    """Check a dataclass built directly in code (not from a config) by the same rules as ``check_settings``:
    call it from ``__post_init__`` so ``RPOConfig(positive_iou=float("nan"))`` fails like the YAML would."""
    check_settings(section, {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance) if f.init},
                   type(instance))


def describe_settings(target: type | Callable[..., Any]) -> list[SettingInfo]:
    """Every declared setting of a dataclass or callable: name, type, range, default and why (for the
    generated configuration reference)."""
    declared = _declared_types(target)
    defaults = _defaults(target)
    infos = []
    for name, annotation in declared.items():
        expected, marks = _split_annotated(annotation)
        bounds = next((m for m in marks if isinstance(m, Range)), None)
        why = next((m.text for m in marks if isinstance(m, Why)), "")
        infos.append(SettingInfo(name, _type_text(expected), bounds.text() if bounds else "",
                                 defaults.get(name, dataclasses.MISSING), why))
    return infos


def _split_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *marks = typing.get_args(annotation)
        return base, tuple(marks)
    return annotation, ()


def _defaults(target: type | Callable[..., Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        values = {}
        for f in dataclasses.fields(target):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        return values
    function = target.__init__ if isinstance(target, type) else target
    return {p.name: p.default for p in inspect.signature(function).parameters.values()
            if p.default is not inspect.Parameter.empty}


def _declared_types(target: type | Callable[..., Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target, include_extras=True)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(target) if f.init}
    function = target.__init__ if isinstance(target, type) else target
    hints = typing.get_type_hints(function, include_extras=True)
    parameters = [p for p in inspect.signature(function).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return {p.name: hints.get(p.name, Any) for p in parameters}


def _conform(value: Any, expected: Any) -> tuple[bool, Any]:
    """(fits, value as used): the few types settings have (numbers, text, paths, lists, mappings, unions)."""
    expected, _ = _split_annotated(expected)
    origin = typing.get_origin(expected)
    if expected is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            ok, converted = _conform(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(expected), value
    if expected is type(None):
        return value is None, value
    if expected is bool:
        return isinstance(value, bool), value
    # numbers.Integral / Real: NumPy scalars too, for settings built in code (YAML gives plain ones)
    if expected is int:
        fits = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return fits, int(value) if fits else value
    if expected is float:
        fits = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return fits, float(value) if fits else value
    if expected in (str, Path) or (isinstance(expected, type) and issubclass(expected, os.PathLike)):
        return isinstance(value, str), value
    container = origin or expected
    if container in (dict, Mapping) or container is typing.Mapping:
        return isinstance(value, Mapping), value
    if container in (list, tuple, typing.Sequence):
        return isinstance(value, (list, tuple)), value
    return isinstance(value, container) if isinstance(container, type) else True, value


def _type_text(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(option) for option in typing.get_args(expected))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(expected))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a path",
             type(None): "null", dict: "a mapping", list: "a list", tuple: "a list"}
    return names.get(origin or expected, getattr(expected, "__name__", str(expected)))


@dataclass
class TrackerConfig:
    """Which tracker to build, its parameters, and whether to wrap it with ChatTracker."""

    tracker: str = "nanotrack_v2"
    params: dict[str, Any] = field(default_factory=dict)
    enhance: bool = False
    chattracker: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    language_start: dict[str, Any] = field(default_factory=dict)  # how a sentence alone finds frame 1's box

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "TrackerConfig":
        check_keys(source, data, TRACKER_CONFIG_KEYS)
        tracker = data.get("tracker", cls.tracker)
        if not isinstance(tracker, str) or not tracker:
            raise ConfigError(f"{source}: 'tracker' must be a tracker name, got {tracker!r}")
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{source}: 'params' must be a mapping, got {type(params).__name__}")
        enhance = data.get("enhance", False)
        if not isinstance(enhance, bool):
            raise ConfigError(f"{source}: 'enhance' must be true or false, got {enhance!r}")
        fusion = data.get("chattracker") or {}
        if not isinstance(fusion, dict):
            raise ConfigError(f"{source}: 'chattracker' must be a mapping, got {type(fusion).__name__}")
        start = data.get("language_start") or {}
        if not isinstance(start, dict):
            raise ConfigError(f"{source}: 'language_start' must be a mapping, got {type(start).__name__}")
        from chattracker.language_start import LanguageStartConfig

        with naming_source(source):  # checked now, not only when a run starts from a sentence
            LanguageStartConfig.from_dict(start)
        return cls(tracker, dict(params), enhance, dict(fusion), source, dict(start))

    def build(self, **overrides: Any) -> Tracker:
        """Build the base tracker (and the ChatTracker wrapper when ``enhance``)."""
        from chattracker_trackers.base import build_tracker

        with naming_source(self.source):
            base = build_tracker(self.tracker, **{**self.params, **overrides})
            if not self.enhance:
                return base
            from chattracker.wrapper import build_chattracker

            return build_chattracker(base, self.chattracker)


@contextlib.contextmanager
def naming_source(source: str | os.PathLike[str] | None) -> Iterator[None]:
    """A ``ConfigError`` raised inside names the config file it came from (``x.yaml: rpo.iterations ...``)."""
    try:
        yield
    except ConfigError as error:
        if source is None or not os.path.isfile(source) or str(error).startswith(str(source)):
            raise  # only a file is worth naming (not "--tracker" or "<dict>")
        raise ConfigError(f"{source}: {error}") from None


def load_tracker_config(path: str | os.PathLike[str]) -> TrackerConfig:
    """Read and check a tracker YAML config; every fault is one ``ConfigError`` naming the file and key."""
    return TrackerConfig.from_dict(load_yaml(path), source=str(path))
