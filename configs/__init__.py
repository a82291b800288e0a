"""Shipped tracker configs (installed as ``chattracker_configs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def default_fusion_settings() -> dict[str, Any]:
    """The ``chattracker:`` section of the shipped ``chattracker.yaml``: the one configuration for every base."""
    from chattracker.config import load_yaml

    return dict(load_yaml(HERE / "chattracker.yaml").get("chattracker") or {})
