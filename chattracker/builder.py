"""Build a tracker from a spec string: a registered name or a YAML config path.

Lives above both ``trackers`` and the fusion wrapper, so the CLI and the eval runner can build a
plain tracker and an enhanced one the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chattracker.types import Tracker


def build_tracker_from_spec(spec: str, **overrides: Any) -> Tracker:
    """``spec`` is a registered tracker name (``nanotrack``, ``mil``...) or a path to a YAML config."""
    from chattracker.config import load_tracker_config
    from chattracker_trackers.base import build_tracker

    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        config = load_tracker_config(spec)
        return config.build(**overrides)
    return build_tracker(spec, **overrides)
