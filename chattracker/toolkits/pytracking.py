"""Any of our trackers as a pytracking / OSTrack tracker object (the other way round from
``chattracker_trackers.pytracking``, which brings their trackers in).

Their evaluation code builds ``tracker_class(params)`` (OSTrack: ``tracker_class(params, dataset_name)``),
then calls ``initialize(image, {'init_bbox': [x, y, w, h], ...})`` on frame 1 and
``track(image, info) -> {'target_bbox': [x, y, w, h]}`` on every other frame, with RGB numpy images.
Their natural-language setting (JointNLT's ``init_nlp`` without ``init_bbox``) starts ours from the
sentence alone: the language start finds the box, and ``initialize`` returns it as ``target_bbox``.
"""

from __future__ import annotations

from typing import Any, Mapping

from chattracker.toolkits.common import HeldBox, as_frame, folder_safe_name, resolve_tracker
from chattracker.types import Box, Tracker

# Keys under which those codebases (and their language-guided forks) pass the target's description.
TEXT_KEYS = ("init_text", "init_nlp", "language", "text", "nlp")


class PytrackingTracker:
    """``params`` is a tracker object, a name / YAML config, or a parameter object whose ``tracker``
    attribute is one of those (what a pytracking parameter file would set)."""

    def __init__(self, params: Any, dataset_name: str | None = None, language_start: dict | None = None) -> None:
        spec = params if isinstance(params, (str, Tracker)) else getattr(params, "tracker", None)
        if spec is None:
            raise TypeError("PytrackingTracker needs a tracker, a tracker spec, or params with a .tracker attribute")
        self.tracker = resolve_tracker(spec)
        self.params = params
        self.dataset_name = dataset_name
        self.name = folder_safe_name(f"chattracker_{self.tracker.name}")
        self.visdom = None  # pytracking's BaseTracker attribute, read by its debug paths
        self.held = HeldBox()
        self.language_start = language_start or getattr(params, "language_start", None) or {}
        self.start = None  # the LanguageStart of a start from the sentence alone

    def initialize(self, image: Any, info: Mapping[str, Any]) -> dict:
        text = next((str(info[key]) for key in TEXT_KEYS if info.get(key)), None)
        frame = as_frame(image)
        if info.get("init_bbox") is not None:
            self.held.start(Box.from_any(info["init_bbox"]))
            self.tracker.initialize(frame, self.held.box, text)
            return {}
        if not text:
            raise ValueError(f"initialize() needs 'init_bbox' or a sentence under one of {', '.join(TEXT_KEYS)}")
        from chattracker.language_start import build_language_start, find_target

        config, grounder, describer = build_language_start(self.language_start)
        self.start = find_target(frame, text, grounder, config, describer)
        box = self.held.start(self.start.target.box)
        self.tracker.initialize(frame, box, text)
        return {"target_bbox": box.to_list()}

    def track(self, image: Any, info: Mapping[str, Any] | None = None) -> dict:
        result = self.tracker.track(as_frame(image))
        box, held = self.held.update(result.box)
        output: dict[str, Any] = {"target_bbox": box.to_list(), "target_absent": held}
        if result.score is not None:
            output["score"] = float(result.score)
        return output
