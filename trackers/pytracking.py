"""Generic adapter for pytracking / OSTrack-style tracker objects.

Those codebases expose ``initialize(image, info)`` with ``info['init_bbox'] = [x, y, w, h]`` and
``track(image, info=None) -> dict`` with ``'target_bbox'`` (and sometimes a score). Images are RGB
numpy arrays there too, so frames pass through unchanged.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from chattracker.errors import ConfigError
from chattracker.types import Box, Frame, TrackResult
from chattracker_trackers.base import register_tracker

# Keys those codebases use for a confidence value, in order of preference.
SCORE_KEYS = ("score", "confidence", "best_score", "max_score", "target_score")


class PytrackingAdapter:
    """Makes a pytracking-style object speak the ChatTracker tracker protocol."""

    def __init__(self, tracker: Any, name: str | None = None, text_key: str = "init_text") -> None:
        for method in ("initialize", "track"):
            if not callable(getattr(tracker, method, None)):
                raise ConfigError(f"{type(tracker).__name__} has no {method}() method; not a pytracking-style tracker")
        self.tracker = tracker
        self.name = name or f"pytracking:{type(tracker).__name__}"
        self.text_key = text_key
        self._track_takes_info = _accepts_second_argument(tracker.track)

    def initialize(self, frame: Frame, box: Box, text: str | None = None) -> None:
        info: dict[str, Any] = {"init_bbox": box.to_list()}
        if text:
            info[self.text_key] = text
        self.tracker.initialize(frame, info)

    def track(self, frame: Frame) -> TrackResult:
        output = self.tracker.track(frame, {}) if self._track_takes_info else self.tracker.track(frame)
        if not isinstance(output, Mapping) or "target_bbox" not in output:
            raise RuntimeError(f"{self.name}.track() must return a dict with 'target_bbox', got {type(output).__name__}")
        raw_box = output["target_bbox"]
        box = Box.from_any(raw_box) if raw_box is not None else None
        return TrackResult(box, _score_of(output), {k: v for k, v in output.items() if k != "target_bbox"})


def _accepts_second_argument(method: Any) -> bool:
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _score_of(output: Mapping[str, Any]) -> float | None:
    for key in SCORE_KEYS:
        if key in output and output[key] is not None:
            try:
                return float(output[key])
            except (TypeError, ValueError):
                return None
    return None


def import_object(path: str) -> Any:
    """Import ``"package.module:attribute"`` (or ``package.module.attribute``)."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ConfigError(f"expected 'module:callable', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import {module_name!r} for {path!r}: {error}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{module_name!r} has no attribute {attribute!r}") from None


@register_tracker("pytracking")
def build_pytracking(factory: str, kwargs: Mapping[str, Any] | None = None, name: str | None = None,
                     text_key: str = "init_text") -> PytrackingAdapter:
    """``factory`` is ``"module:callable"`` returning a pytracking-style tracker object."""
    return PytrackingAdapter(import_object(factory)(**dict(kwargs or {})), name=name, text_key=text_key)
