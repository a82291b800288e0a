"""Tracker registry: adapters register a factory by name; configs and the CLI build them by name."""

from __future__ import annotations

import difflib
from typing import Any, Callable

from chattracker.config import check_settings
from chattracker.errors import ConfigError
from chattracker.types import Tracker

TrackerFactory = Callable[..., Tracker]

_REGISTRY: dict[str, TrackerFactory] = {}


def register_tracker(name: str) -> Callable[[TrackerFactory], TrackerFactory]:
    """Decorator: make ``factory(**params)`` available as tracker ``name``."""

    def decorator(factory: TrackerFactory) -> TrackerFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"tracker {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_trackers() -> list[str]:
    """The registered tracker names, built-in adapters included."""
    _load_builtin_adapters()
    return sorted(_REGISTRY)


def build_tracker(name: str, /, **params: Any) -> Tracker:
    """Build a registered tracker; unknown names and bad parameters raise ``ConfigError``."""
    _load_builtin_adapters()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown tracker {name!r}{hint}; available: {', '.join(sorted(_REGISTRY))}")
    # Types, finiteness and declared ranges first, by the one helper every config section goes through.
    params = check_settings(f"bad parameters for tracker {name!r}: params", params, _REGISTRY[name])
    try:
        return _REGISTRY[name](**params)
    except TypeError as error:
        raise ConfigError(f"bad parameters for tracker {name!r}: {error}") from None


def _load_builtin_adapters() -> None:
    # Importing the adapter modules runs their @register_tracker decorators.
    from chattracker_trackers import nanotrack, opencv, pytracking  # noqa: F401
