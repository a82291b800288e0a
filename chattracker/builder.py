"""Build a tracker from a spec string: a registered name, ``NAME+chattracker``, or a YAML config path.

Lives above both ``trackers`` and the fusion wrapper, so the CLI and the eval runner can build a
plain tracker and an enhanced one the same way. ``NAME+chattracker`` wraps any registered base with the
default fusion settings (``configs/chattracker.yaml``), so no YAML has to be written to wrap a base;
the ``+`` keeps the spec usable as a results folder name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chattracker.types import Tracker

ENHANCED = "+chattracker"


def is_config_path(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml")) or Path(spec).is_file()


def enhanced_spec(spec: str) -> str:
    """The spec of ``spec`` wrapped with ChatTracker (a name gets ``+chattracker``; a config must say
    ``enhance: true`` itself)."""
    if is_config_path(spec) or spec.endswith(ENHANCED):
        return spec
    return spec + ENHANCED


def base_name_of(spec: str) -> str:
    """The registered base tracker a name spec builds (``csrt+chattracker`` -> ``csrt``)."""
    return spec[: -len(ENHANCED)] if spec.endswith(ENHANCED) else spec


def build_tracker_from_spec(spec: str, **overrides: Any) -> Tracker:
    """``spec`` is a registered tracker name (``nanotrack_v2``, ``csrt``...), that name with ``+chattracker``,
    or a path to a YAML config."""
    from chattracker.config import TrackerConfig, load_tracker_config
    from chattracker_trackers.base import build_tracker

    if is_config_path(spec):
        return load_tracker_config(spec).build(**overrides)
    if spec.endswith(ENHANCED):
        from chattracker_configs import default_fusion_settings

        config = TrackerConfig(tracker=base_name_of(spec), enhance=True, chattracker=default_fusion_settings(),
                               source=spec)
        return config.build(**overrides)
    return build_tracker(spec, **overrides)
