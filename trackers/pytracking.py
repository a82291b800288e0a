"""Generic adapter for pytracking / OSTrack-style tracker objects.

Those codebases expose ``initialize(image, info)`` with ``info['init_bbox'] = [x, y, w, h]`` and
``track(image, info=None) -> dict`` with ``'target_bbox'`` (and sometimes a score). Images are RGB
numpy arrays there too, so frames pass through unchanged. Their vision-language forks read the sentence
under their own key (``text_key``): JointNLT ``init_nlp``, UVLTrack ``language``, ours ``init_text``; those
that can start from the sentence alone (``language_init``) get no ``init_bbox`` and report frame 1's box
(``initialize`` returning ``target_bbox``, or pytracking's ``state`` attribute).
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
# Where the VL trackers read the sentence: ours, JointNLT's, UVLTrack's (any other key may be configured).
KNOWN_TEXT_KEYS = ("init_text", "init_nlp", "language")


class PytrackingAdapter:
    """Makes a pytracking-style object speak the ChatTracker tracker protocol."""

    def __init__(self, tracker: Any, name: str | None = None, text_key: str = "init_text",
                 language_init: bool = False) -> None:
        for method in ("initialize", "track"):
            if not callable(getattr(tracker, method, None)):
                raise ConfigError(f"{type(tracker).__name__} has no {method}() method; not a pytracking-style tracker")
        if not isinstance(text_key, str) or not text_key.strip():
            raise ConfigError(f"pytracking: text_key must be a key name such as {', '.join(KNOWN_TEXT_KEYS)}, got {text_key!r}")
        if not isinstance(language_init, bool):
            raise ConfigError(f"pytracking: language_init must be true or false, got {language_init!r}")
        self.tracker = tracker
        self.name = name or f"pytracking:{type(tracker).__name__}"
        self.text_key = text_key
        self.starts_from_language = language_init
        self.initial_box: Box | None = None
        self._track_takes_info = _accepts_second_argument(tracker.track)

    def initialize(self, frame: Frame, box: Box | None, text: str | None = None) -> None:
        """With ``box`` None (``language_init`` trackers) only the sentence is passed; the tracker's own
        frame-1 box becomes ``initial_box``."""
        if box is None and not (self.starts_from_language and text):
            raise ConfigError(f"{self.name}: no initial box, and the tracker is not set to start from language "
                              "(language_init: true) or no sentence was given")
        info: dict[str, Any] = {} if box is None else {"init_bbox": box.to_list()}
        if text:
            info[self.text_key] = text
        output = self.tracker.initialize(frame, info)
        if box is not None:
            self.initial_box = box
            return
        found = output.get("target_bbox") if isinstance(output, Mapping) else None
        found = found if found is not None else getattr(self.tracker, "state", None)
        if found is None:
            raise RuntimeError(f"{self.name}: initialize() from language returned no 'target_bbox' and the tracker "
                               "has no .state: frame 1's box is unknown")
        self.initial_box = Box.from_any(found)

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
                     text_key: str = "init_text", language_init: bool = False) -> PytrackingAdapter:
    """``factory`` is ``"module:callable"`` returning a pytracking-style tracker object; ``text_key`` the
    info key its sentence goes under; ``language_init`` true when it can start from the sentence alone."""
    return PytrackingAdapter(import_object(factory)(**dict(kwargs or {})), name=name, text_key=text_key,
                             language_init=language_init)
