"""YAML configuration of a tracker run, validated with errors that say what to fix.

A config file looks like::

    tracker: nanotrack_v2        # a registered tracker name (`chattracker track --help` lists them)
    params: {}                   # keyword arguments of that tracker's factory
    enhance: false               # wrap it with the ChatTracker fusion module
    chattracker: {}              # fusion settings (see configs/chattracker.yaml)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chattracker.errors import ConfigError
from chattracker.types import Tracker

TRACKER_CONFIG_KEYS = {"tracker", "params", "enhance", "chattracker"}


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; missing file, bad syntax or a non-mapping is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def check_keys(section: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{section}: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


@dataclass
class TrackerConfig:
    """Which tracker to build, its parameters, and whether to wrap it with ChatTracker."""

    tracker: str = "nanotrack_v2"
    params: dict[str, Any] = field(default_factory=dict)
    enhance: bool = False
    chattracker: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

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
        return cls(tracker, dict(params), enhance, dict(fusion), source)

    def build(self, **overrides: Any) -> Tracker:
        """Build the base tracker (and the ChatTracker wrapper when ``enhance``)."""
        from chattracker_trackers.base import build_tracker

        base = build_tracker(self.tracker, **{**self.params, **overrides})
        if not self.enhance:
            return base
        from chattracker.wrapper import build_chattracker

        return build_chattracker(base, self.chattracker)


def load_tracker_config(path: str | os.PathLike[str]) -> TrackerConfig:
    return TrackerConfig.from_dict(load_yaml(path), source=str(path))
