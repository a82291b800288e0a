"""``ChatTracker``: wrap any tracker with semantic tracking and foreground verification.

The wrapper is itself a tracker (same protocol), so the CLI and the eval runner treat a plain and an
enhanced tracker the same way. Per frame the base tracker predicts; on a sparse schedule a grounding
round reads top to bottom: candidates (the base box, the grounder's proposals for the descriptions,
template re-detections) -> tracklets (an identity per object across rounds) -> scores (measurements,
then a learned log-odds that each is the target) -> path (which tracklet is the target, by an online
dynamic programme with a switching cost) -> actions (re-initialise the base on the chosen tracklet,
remember new looks, refresh the template, re-describe). Descriptions come from RPO on the first frame
(cached on disk).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from chattracker.config import Range, Why
from chattracker.errors import ChatTrackerError, ConfigError
from chattracker.fusion.appearance import AppearanceMemory
from chattracker.fusion.candidates import Candidate, embed_candidates, gather_candidates, intersection_area
from chattracker.fusion.colour import ColourEvidence
from chattracker.fusion.decision import SELECTIONS, Decision, Selector, is_confirmed
from chattracker.fusion.embedding import EMBEDDERS, build_embedder
from chattracker.fusion.features import RoundContext, candidate_features
from chattracker.fusion.identities import IdentityTracker
from chattracker.fusion.motion import BoxKalman
from chattracker.fusion.path import TrackletPath
from chattracker.fusion.schedule import GroundingSchedule
from chattracker.fusion.scoring import score_candidates
from chattracker.fusion.target_model import TargetModel, load_model
from chattracker.fusion.semantic import GroundedFrame, ground, merge_grounded, search_region
from chattracker.types import Box, Description, Frame, Tracker, TrackResult

logger = logging.getLogger(__name__)

REGIONS = ("search", "frame")
FOREGROUND_COLOR = (255, 210, 0)
BACKGROUND_COLOR = (230, 60, 60)
CHOSEN_COLOR = (40, 220, 80)


Unit = Annotated[float, Range(0.0, 1.0)]
Positive = Annotated[float, Range(0.0, None, low_open=True)]
Count = Annotated[int, Range(1, None)]
Frames = Annotated[int, Range(0, None)]


@dataclass
class FusionConfig:
    """Every fusion setting (the ``chattracker:`` section of a YAML config); ablations included."""

    describer: Annotated[str, Why("registered describer: attributes | hf | openai")] = "attributes"
    describer_params: dict[str, Any] = field(default_factory=dict)
    grounder: Annotated[str, Why("registered grounder: yolox | hf")] = "yolox"
    grounder_params: dict[str, Any] = field(default_factory=dict)
    rpo: Annotated[dict[str, Any], Why("RPOConfig fields (iterations, positive_iou, ...)")] = field(default_factory=dict)
    rpo_cache: Annotated[bool, Why("RPO results cached on disk: the first frame is described once per sequence")] = True
    cache_dir: Annotated[str | None, Why("default: rpo/ in $CHATTRACKER_CACHE or the user cache dir")] = None
    foreground: Annotated[str | None, Why("given: skip RPO and use this description")] = None
    background: str | None = None
    # Semantic tracking: when and where to ground.
    ground_every: Annotated[Frames, Why("periodic grounding every K frames (0: only on triggers); grounding is "
                                        "the expensive step, 10 keeps throughput >= 0.6x NanoTrack v2's")] = 10
    ground_cooldown: Annotated[Frames, Why("smallest gap between rounds pulled forward by a trigger")] = 3
    low_score: Annotated[Unit, Why("a base score under this pulls the next round forward")] = 0.5
    motion_gate: Annotated[Positive, Why("a base box this far (Kalman distance) from the motion prior pulls the "
                                         "next round forward")] = 1.0
    region: Annotated[str, Why("search (enlarged region around the box) | frame (whole frame)")] = "search"
    search_scale: Annotated[float, Range(1.0, 20.0), Why("side of the search region over the box's")] = 2.0
    frame_every: Annotated[Frames, Why("also ground the whole frame every K rounds (0: never; always while the "
                                       "target is not found)")] = 0
    min_region: Annotated[float, Range(1.0, None), Why("smallest search region side in pixels")] = 128.0
    proposal_min_score: Annotated[Unit, Why("proposals weaker than this are dropped")] = 0.2
    max_proposals: Annotated[Count, Why("foreground proposals a round weighs besides the base box")] = 6
    embed_min_score: Annotated[Unit, Why("proposals weaker than this get no embedding (a learned embedding "
                                         "costs milliseconds per crop)")] = 0.4
    embed_limit: Annotated[Count, Why("at most this many proposals embedded per round")] = 4
    redetect: Annotated[bool, Why("class-agnostic candidates from NanoTrack's Siamese head with the frame-1 "
                                  "template")] = True
    redetect_min_score: Annotated[Unit, Why("match score a re-detection needs")] = 0.5
    redetect_windows: Annotated[Count, Why("windows over the frame while the target is not found")] = 6
    use_background: Annotated[bool, Why("ground the background description (its overlap is a feature)")] = True
    appearance: Annotated[str, Why("auto = osnet (int8) for people, else nanotrack (bench/appearance.py, same-"
                                   "class ROC AUC pooled: osnet 0.93, nanotrack 0.86, mobilenetv2 0.83, "
                                   "hsv_hog 0.78)")] = "auto"
    appearance_params: dict[str, Any] = field(default_factory=dict)
    memory_size: Annotated[Count, Why("confirmed looks remembered")] = 8
    novelty: Annotated[Unit, Why("a confirmed look less similar than this (calibrated) is remembered")] = 0.8
    colour_miss: Annotated[Unit, Why("a look with less than this share of the described colour is not "
                                     "remembered (a same-class look-alike of another colour)")] = 0.2
    # Decision: learned scores and the tracklet path.
    selection: Annotated[str, Why("path (learned scores + tracklet path) | random | oracle | base (ablations)")] = "path"
    model: Annotated[str | None, Why("fusion model file (default: the bundled one, trained by "
                                     "bench/fusion_train.py on the 26 development sequences)")] = None
    switch_cost: Annotated[float | None, Range(0.0, None), Why("log-odds a switch of tracklet costs (default: "
                                                              "the model file's, chosen by cross-validation)")] = None
    decay: Annotated[float | None, Range(0.0, 1.0, low_open=True), Why("weight of the last round's path value "
                                                                      "(default: the model file's)")] = None
    unseen: Annotated[float | None, Range(-20.0, 20.0), Why("log-odds of a tracklet not found in a round "
                                                            "(default: the model file's)")] = None
    switch_iou: Annotated[Unit, Why("a chosen box overlapping the base box this much is the base's own object: "
                                    "the base box is kept, with its size")] = 0.5
    confirm_iou: Annotated[Unit, Why("a detection confirms the base box at this IoU")] = 0.6
    confirm_score: Annotated[Unit, Why("... when found with at least this score")] = 0.5
    search_below: Annotated[Unit, Why("the chosen target's probability under this makes the next round search "
                                      "the whole frame")] = 0.5
    alternate_rounds: Annotated[Frames, Why("rounds a tracklet left by a switch is still searched around its last "
                                            "box, so the switch can be undone")] = 5
    absent_score: Annotated[Unit, Why("score reported while the base reports no box")] = 0.25
    seed: Annotated[int, Range(0, None), Why("seed of the random selection (ablation)")] = 0
    # Template refresh on a confirmed change of scale (airplane-1: the landing airplane grows 5x).
    refresh_template: Annotated[bool, Why("re-initialise the base on a confirmed look at a new scale")] = True
    refresh_gap: Annotated[Frames, Why("frames between two template refreshes at least")] = 50
    refresh_scale: Annotated[float, Range(1.0, None), Why("area change since the template that counts as a new "
                                                          "scale (1.5 re-templated walkers, about -1 AUC each)")] = 2.0
    refresh_aspect: Annotated[float, Range(1.0, None), Why("... with the aspect ratio within this factor")] = 1.4
    refresh_iou: Annotated[Unit, Why("... and the base box agreeing this well with the detector's")] = 0.7
    refresh_rounds: Annotated[Count, Why("... in this many confirmed rounds in a row")] = 2
    refresh_occluded: Annotated[Unit, Why("never a shrink whose missing part lies this much under another found "
                                          "object (a walker half hidden by a car)")] = 0.3
    reinit_size: Annotated[str, Why("a switch re-initialises with the remembered size (memory) or the "
                                    "proposal's")] = "memory"
    refresh_box: Annotated[str, Why("re-template on the base box or on the confirming proposal")] = "base"
    redescribe: Annotated[bool, Why("run RPO again after a switch and when a new look-alike appears")] = True
    redescribe_gap: Annotated[Frames, Why("frames between two re-descriptions at least")] = 150
    max_foreground: Annotated[Count, Why("descriptions kept (the first one always)")] = 3

    @classmethod
    def from_dict(cls, settings: dict[str, Any], section: str = "chattracker") -> "FusionConfig":
        """Validate the settings mapping with the shared settings check: unknown keys, wrong types,
        non-finite numbers and values out of range are one ``ConfigError`` naming the key."""
        from chattracker.config import check_settings

        config = cls(**check_settings(section, settings, cls))
        config.check(section)
        return config

    def check(self, section: str = "chattracker") -> None:
        choices = {"region": REGIONS, "selection": SELECTIONS, "reinit_size": ("memory", "proposal"),
                   "refresh_box": ("base", "proposal")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{section}.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        from chattracker.rpo import RPOConfig

        RPOConfig.from_dict(self.rpo)  # unknown or bad RPO settings fail here, not at the first frame
        if self.appearance != "auto" and self.appearance not in EMBEDDERS.names():
            raise ConfigError(f"{section}.appearance must be auto or one of {', '.join(EMBEDDERS.names())}, "
                              f"got {self.appearance!r}")


class ChatTracker:
    """A tracker that wraps ``base`` (any object of the tracker protocol)."""

    def __init__(self, base: Tracker, describer: Any = None, grounder: Any = None,
                 config: FusionConfig | None = None, model: TargetModel | None = None, **settings: Any) -> None:
        if config is not None and settings:
            raise ConfigError("pass either a FusionConfig or settings, not both")
        self.base = base
        self.config = config if config is not None else FusionConfig.from_dict(settings)
        self.describer = describer
        self.grounder = grounder
        if grounder is None:
            raise ConfigError("ChatTracker needs a grounder (build_chattracker builds the configured one)")
        if describer is None and self.config.foreground is None:
            raise ConfigError("ChatTracker needs a describer, or a 'foreground' description in its settings")
        base_name = getattr(base, "name", type(base).__name__)
        self.name = f"chattracker:{base_name}"
        c = self.config
        # The ablation selections (base, random, oracle) weigh no scores: they run without a model file.
        needed = c.selection == "path" or c.model is not None
        self.model = model if model is not None or not needed else load_model(c.model)
        self.scorer = self.model.scorer_for(base_name) if self.model is not None else None
        settings = (self.model.switch_cost, self.model.decay, self.model.unseen) if self.model else (0.0, 1.0, 0.0)
        path = TrackletPath(*(own if own is not None else learned
                              for own, learned in zip((c.switch_cost, c.decay, c.unseen), settings)))
        self.selector = Selector(c.selection, path, c.switch_iou, c.seed)
        self.schedule = GroundingSchedule(c.ground_every, c.ground_cooldown, c.low_score, c.motion_gate)
        self._embedders: dict[str, Any] = {}
        self._redetector: Any = None
        self.redetector: Any = None
        self.embedder: Any = None
        self.tracklets = IdentityTracker()
        self.colours = ColourEvidence()
        self.memory = AppearanceMemory(self.embedder, c.memory_size)
        self.descriptions: list[Description] = []
        self._all_descriptions: list[Description] = []
        self._description_frames: list[tuple[int, str]] = []
        self.events: list[dict[str, Any]] = []
        self.ground_truth: np.ndarray | None = None
        self.frame_index = 0
        self._kalman: BoxKalman | None = None
        self.grounding_seconds = 0.0
        self.grounding_rounds = 0

    # -- protocol ---------------------------------------------------------------------------------------
    def initialize(self, frame: Frame, box: Box, text: str | None = None) -> None:
        box = Box.from_any(box)  # numpy rows (np.loadtxt(...)[0]) are the natural call
        self.base.initialize(frame, box, text)
        self.frame_index = 0
        self._text = text
        self.descriptions = [self._describe(frame, box, text)]
        self._all_descriptions = list(self.descriptions)
        self._description_frames = [(1, "the first frame")]
        self.embedder = self._embedder_for(self.descriptions[0])
        self.memory = AppearanceMemory(self.embedder, self.config.memory_size)
        self.memory.add(frame, box)
        if self.memory.entries:
            self.memory.calibrate(frame, box)
        self.colours.reset(frame, box, self.descriptions[0].foreground)
        self._kalman = BoxKalman(box)
        self.schedule.reset(0)
        self.tracklets.reset(box, self.memory.entries[0] if self.memory.entries else None)
        self.selector.reset(self.tracklets.target)
        self.events = []
        self.grounding_seconds, self.grounding_rounds = 0.0, 0
        # What the last round left for the next one: whether the target was found, the tracklets
        # recently left by a switch (still searched), the template's boxes and the refresh count.
        self._found = True
        self._left: dict[int, int] = {}
        self._template, self._template_proposal = box, None
        self._last_refresh = self._last_redescribe = 0
        self._rescaled_rounds = 0
        self._round_background: list[Box] = []
        self._graded = bool(getattr(self.base, "score_is_confidence", True))
        self.redetector = None
        if self.config.redetect:
            if self._redetector is None:
                from chattracker.fusion.redetect import TemplateRedetector

                self._redetector = TemplateRedetector()
            self.redetector = self._redetector
            self.redetector.initialize(frame, box)

    def track(self, frame: Frame) -> TrackResult:
        if self._kalman is None:
            raise RuntimeError(f"{self.name}: track() called before initialize()")
        self.frame_index += 1
        result = self.base.track(frame)
        if result.score is not None:
            result = dataclasses.replace(result, score=float(result.score))  # np.float32 is not JSON
        prior = self._kalman.predict()
        # A base tracker that reports the target absent is stood in for by the motion prior, so the
        # next grounding round can still look for the target where it should be.
        stand_in = result.box is None
        base_box = prior if stand_in else result.box
        base_score = 0.0 if stand_in else result.score
        motion = float("inf") if stand_in else self._kalman.distance(base_box, prior)
        reason = self.schedule.due(self.frame_index, base_score, motion)
        info: dict[str, Any] = {"base_box": None if stand_in else base_box.to_list(),
                                "base_score": result.score, "text_lines": self._text_lines()}
        if reason is None:
            if stand_in:
                score = self.config.absent_score if result.score is None else min(result.score, self.config.absent_score)
                return TrackResult(None, score, {**info, "decision": "absent"})
            self._kalman.update(base_box)
            return TrackResult(base_box, result.score, info)

        grounded = self._ground(frame, base_box, prior)
        decision = self._round(frame, base_box, base_score, prior, grounded)
        if stand_in and decision.box is base_box:
            decision = dataclasses.replace(decision, box=None, kind="absent", chosen=None,
                                           reason="absent (base reports none; the target's tracklet not found)")
        self._act(frame, decision)
        if decision.box is not None:
            self._kalman.update(decision.box)
        info.update(self._round_info(reason, grounded, decision))
        score = result.score
        if decision.box is None:
            score = self.config.absent_score if score is None else min(score, self.config.absent_score)
        elif decision.box is not base_box and decision.chosen is not None:
            score = decision.chosen.grounding
        return TrackResult(decision.box, score, info)

    def _round(self, frame: Frame, base_box: Box, base_score: float | None, prior: Box,
               grounded: GroundedFrame) -> Decision:
        """One grounding round, top to bottom: candidates -> tracklets -> scores -> path -> decision."""
        c = self.config
        # 1. Candidates: the base box, the grounder's proposals, template re-detections.
        candidates = gather_candidates(base_box, grounded, self._redetect(frame, base_box, base_score, prior),
                                       c.max_proposals)
        embed_candidates(frame, candidates, self.embedder, c.embed_min_score, c.embed_limit)
        for candidate in candidates:
            candidate.colour = self.colours.support(frame, candidate.box)
        # 2. Tracklets: an identity per object across rounds.
        self.tracklets.update(candidates)
        # 3. Scores: measurements, then the learned log-odds that each candidate is the target.
        self._round_background = [b for b, _, _ in grounded.background]
        score_candidates(candidates, self.memory, self.tracklets.distractor_embeddings(), prior,
                         self._round_background, self._kalman.distance)
        confirmed = is_confirmed(candidates[0], c.confirm_iou, c.confirm_score)
        context = RoundContext(base_score, self._graded,
                               self.memory.typical_size() if self.memory.boxes else None)
        features = candidate_features(candidates, context, self.tracklets.histories())
        logits = self.scorer.logits(features) if self.scorer is not None else np.zeros(len(candidates))
        for candidate, row, logit in zip(candidates, features, logits):
            candidate.features, candidate.total = row, float(logit)
        # 4. Path: which tracklet is the target.
        decision = self.selector.decide(candidates, self.tracklets.alive(), confirmed, self._truth())
        if decision.reinitialize and decision.box is not None and c.reinit_size == "memory" and not decision.keep_size:
            decision = dataclasses.replace(decision, box=self._remembered_size(decision.box))
        self.tracklets.assign(decision.chosen, candidates, c.colour_miss, 1.0)
        return decision

    def _truth(self) -> Box | None:
        if self.ground_truth is None or self.frame_index >= len(self.ground_truth):
            return None
        row = self.ground_truth[self.frame_index]
        return Box.from_any(row) if np.all(np.isfinite(row)) else Box(0.0, 0.0, 0.0, 0.0)

    # -- parts ------------------------------------------------------------------------------------------
    def set_ground_truth(self, boxes: np.ndarray | None) -> None:
        """Ground-truth boxes per frame, for the ``oracle`` selection only (analysis, never in use)."""
        self.ground_truth = None if boxes is None else np.asarray(boxes, dtype=float).reshape(-1, 4)

    def _describe(self, frame: Frame, box: Box, text: str | None) -> Description:
        if self.config.foreground is not None:
            return Description(self.config.foreground, self.config.background or "", "from settings")
        from chattracker.rpo import RPOCache, RPOConfig, run_rpo_cached

        start = time.perf_counter()
        cache = RPOCache(self._cache_dir()) if self.config.rpo_cache else None
        result = run_rpo_cached(cache, frame, box, self.describer, self.grounder, RPOConfig.from_dict(self.config.rpo),
                                initial_text=text)
        if not result.ok:
            raise ChatTrackerError("RPO produced no usable foreground description (see its trace); "
                                   "set 'foreground' in the chattracker settings to give one")
        logger.info("RPO: %r / %r (top-1 IoU %.2f, %.2fs)", result.description.foreground,
                    result.description.background, result.top1_iou, time.perf_counter() - start)
        return result.description

    def _embedder_for(self, description: Description) -> Any:
        """The configured appearance model; ``auto``: re-identification for people, else NanoTrack's
        backbone (built once, shared by later sequences)."""
        name = self.config.appearance
        if name == "auto":
            from chattracker.grounding.phrases import coco_classes_for

            name = "osnet" if "person" in coco_classes_for(description.foreground) else "nanotrack"
        if name not in self._embedders:
            self._embedders[name] = build_embedder(name, **self.config.appearance_params)
        return self._embedders[name]

    def _cache_dir(self) -> Path:
        if self.config.cache_dir:
            return Path(self.config.cache_dir)
        import os

        import platformdirs

        from chattracker.weights import ENV_CACHE

        root = os.environ.get(ENV_CACHE) or platformdirs.user_cache_dir("chattracker")
        return Path(root) / "rpo"

    def _phrases(self) -> tuple[list[str], list[str]]:
        foreground = list(dict.fromkeys(d.foreground for d in self.descriptions if d.foreground))
        background: list[str] = []
        if self.config.use_background:
            for d in self.descriptions:
                background.extend(p for p in d.background_phrases() if p not in background)
        return foreground, background

    def _ground(self, frame: Frame, base_box: Box, prior: Box) -> GroundedFrame:
        height, width = frame.shape[:2]
        region = None
        if self.config.region == "search":
            region = search_region(base_box, width, height, self.config.search_scale, self.config.min_region)
            if base_box.iou(prior) < 0.5:
                # The base box jumped away from where motion expects the target: search both places.
                other = search_region(prior, width, height, self.config.search_scale, self.config.min_region)
                region = Box.from_xyxy(*np.minimum(region.to_xyxy()[:2], other.to_xyxy()[:2]),
                                       *np.maximum(region.to_xyxy()[2:], other.to_xyxy()[2:]))
        foreground, background = self._phrases()
        start = time.perf_counter()
        grounded = ground(self.grounder, frame, foreground, background, region, self.config.proposal_min_score)
        every = self.config.frame_every
        if region is not None and (not self._found or (every > 0 and self.grounding_rounds % every == every - 1)):
            # The whole frame too, now and then and while the target seems lost: a look-alike that
            # took the base box away leaves the target outside the search region.
            wide = ground(self.grounder, frame, foreground, background, None, self.config.proposal_min_score)
            grounded = merge_grounded(grounded, wide)
        self.grounding_seconds += time.perf_counter() - start
        self.grounding_rounds += 1
        return grounded

    def _redetect(self, frame: Frame, base_box: Box, base_score: float | None, prior: Box) -> list[tuple[Box, float]]:
        """Template re-detections: a window at the motion prior and one at the last box of each tracklet
        a recent switch left (so the switch can be undone) every round; a coarse grid of the whole frame
        while the target is not found (last round's chosen target unlikely, or a low base score)."""
        if self.redetector is None:
            return []
        c = self.config
        size = self.memory.typical_size() if self.memory.boxes else None
        centers = [prior.center]
        for tracklet, since in list(self._left.items()):
            left = self.tracklets.find(tracklet)
            if left is None or self.grounding_rounds - since > c.alternate_rounds:
                del self._left[tracklet]
            elif left.box.iou(base_box) < 0.5:
                centers.append(left.box.center)
        lost = not self._found or (base_score is not None and base_score < c.low_score)
        if lost:
            height, width = frame.shape[:2]
            centers += self.redetector.grid_centers(width, height, size, c.redetect_windows)
        found: list[tuple[Box, float]] = []
        for window in self.redetector.search_many(frame, centers, size, c.redetect_min_score):
            for box, score in window:
                if all(box.iou(other) < 0.5 for other, _ in found):
                    found.append((box, score))
        return found

    def _act(self, frame: Frame, decision: Decision) -> None:
        """Re-initialise the base tracker on the chosen tracklet, remember new looks, refresh the
        template, re-describe after a switch."""
        chosen = decision.chosen
        if self.scorer is not None:
            self._found = chosen is not None and 1.0 / (1.0 + np.exp(-chosen.total)) >= self.config.search_below
        else:  # the ablations weigh no scores: the detector confirming the base box is what "found" means
            self._found = decision.confirmed
        if decision.box is None:
            return
        if decision.reinitialize:
            base = decision.candidates[0]
            if base.identity != decision.state:
                self._left[base.identity] = self.grounding_rounds  # still searched, so this can be undone
            self.tracklets.follow(decision.state)
            self.base.initialize(frame, decision.box, self._text)
            self._template = decision.box
            self._template_proposal = None
            self._rescaled_rounds = 0
            self.events.append({"frame": self.frame_index + 1, "event": "reinitialize", "box": decision.box.to_list(),
                                "reason": decision.reason, "from": base.identity, "to": decision.state})
            if self._may_redescribe():
                self._redescribe(frame, decision.box, "after a recovery: the target may look different now")
            return
        if self._may_redescribe() and self._new_lookalike(decision):
            self._redescribe(frame, decision.box, "a new look-alike appeared near the target")
            return
        base = decision.candidates[0] if decision.candidates else None
        refresh = self._refresh_due(decision, base)
        if decision.confirmed and decision.chosen is base and self._template_proposal is None:
            # The detector's box of the target when the template was taken: scale changes are
            # measured detector box against detector box (a person box around a face, a looser
            # box than the tracker's, would otherwise read as a change of scale).
            self._template_proposal = decision.confirming.box
        if (decision.confirmed and base is not None and decision.chosen is base
                and self.memory.similarity(base.embedding) < self.config.novelty
                and (base.colour is None or base.colour >= self.config.colour_miss)):
            # (A look without the described colour is not remembered: the detector confirms the
            # class, and a same-class look-alike of another colour would enter the memory.)
            self.memory.add(frame, decision.box, base.embedding)
            # A Siamese template taken at another scale is what degrades the base tracker most when
            # the target approaches or recedes; a confirmed box at the new scale is a safe new template.
            if self.config.refresh_template and decision.confirming and refresh:
                box = decision.box if self.config.refresh_box == "base" else decision.confirming.box
                self.base.initialize(frame, box, self._text)
                self._template = box
                self._template_proposal = decision.confirming.box
                self._last_refresh = self.frame_index
                self.events.append({"frame": self.frame_index + 1, "event": "refresh", "box": box.to_list(),
                                    "proposal": decision.confirming.box.to_list()})

    def _remembered_size(self, box: Box) -> Box:
        """``box``'s centre with the size of the last confirmed boxes: a detector's extents are looser
        than a tracker's, and a template taken from a loose box drifts. Far from that size (factor 2
        in area) the proposal's own size wins: the target really changed scale."""
        w, h = self.memory.typical_size()
        ratio = box.area / max(w * h, 1e-6)
        if not 0.5 <= ratio <= 2.0:
            return box
        cx, cy = box.center
        return Box(cx - w / 2.0, cy - h / 2.0, w, h)

    def _refresh_due(self, decision: Decision, base: Candidate | None) -> bool:
        """A template refresh: the target seen at a new scale, by a base box the detector agrees with,
        ``refresh_rounds`` confirmed rounds in a row (counted every round)."""
        confirming = decision.confirming
        rescaled = (confirming is not None and decision.chosen is base and self._is_rescaled(confirming.box)
                    and decision.box is not None and decision.box.iou(confirming.box) >= self.config.refresh_iou
                    and not self._occluded_shrink(decision))
        self._rescaled_rounds = self._rescaled_rounds + 1 if rescaled else 0
        return self._rescaled_rounds >= self.config.refresh_rounds

    def _occluded_shrink(self, decision: Decision) -> bool:
        """A smaller box because something covers the target, not because it went away: the part of the
        template's extent (at the new box's centre) that the new box lacks lies under another object
        the round found (Woman walking behind a car: base and detector both shrink to her upper body)."""
        box, template = decision.box, self._template
        if box is None or box.area >= template.area:
            return False
        cx, cy = box.center
        extent = Box(cx - template.w / 2.0, cy - template.h / 2.0, template.w, template.h)
        missing = extent.area - intersection_area(extent, box)
        if missing <= 0:
            return False
        others = [c.box for c in decision.candidates[1:]] + self._round_background
        covered = max((intersection_area(extent, other) - intersection_area(extent, other, box) for other in others),
                      default=0.0)
        return covered >= self.config.refresh_occluded * missing

    def _is_rescaled(self, box: Box) -> bool:
        """Whether ``box`` is the template's target seen at another scale (same shape, other size)."""
        if self.frame_index - self._last_refresh < self.config.refresh_gap:
            return False
        template = self._template_proposal
        if template is None:
            return False
        scale = box.area / max(template.area, 1e-6)
        aspect = (box.w / max(box.h, 1e-6)) / max(template.w / max(template.h, 1e-6), 1e-6)
        return (max(scale, 1.0 / max(scale, 1e-6)) >= self.config.refresh_scale
                and max(aspect, 1.0 / max(aspect, 1e-6)) <= self.config.refresh_aspect)

    def _may_redescribe(self) -> bool:
        return self.config.redescribe and self.frame_index - self._last_redescribe >= self.config.redescribe_gap

    def _new_lookalike(self, decision: Decision) -> bool:
        """A detected object first seen this round near the kept target that looks like it: the
        description written without it may not tell the two apart."""
        if decision.chosen is None or decision.chosen is not decision.candidates[0]:
            return False
        near = decision.chosen.box.scaled(3.0)
        return any(c.role == "new" and c.source not in ("base", "redetect") and c.embedding is not None
                   and c.total > 0.0 and c.box.iou(near) > 0
                   for c in decision.candidates[1:])

    def _redescribe(self, frame: Frame, box: Box, why: str) -> None:
        self._last_redescribe = self.frame_index
        try:
            description = self._describe(frame, box, self._text)
        except Exception as error:  # a failed re-description must not stop tracking; say so
            logger.warning("re-description at frame %d failed: %s", self.frame_index + 1, error)
            return
        self.descriptions.append(description)
        self._all_descriptions.append(description)
        if len(self.descriptions) > self.config.max_foreground:
            del self.descriptions[1]  # keep the first-frame description and the newest ones
        self._description_frames.append((self.frame_index + 1, why))
        self.events.append({"frame": self.frame_index + 1, "event": "redescribe", "foreground": description.foreground,
                            "background": description.background, "why": why})

    def description_log(self) -> list[dict[str, Any]]:
        """Every description made for this sequence, with its frame and why it was made (including
        those no longer in use)."""
        return [{"frame": frame, "why": why, "foreground": d.foreground, "background": d.background}
                for (frame, why), d in zip(self._description_frames, self._all_descriptions)]

    def _text_lines(self) -> list[str]:
        lines = [f"fg: {d.foreground}" for d in self.descriptions]
        background = self._phrases()[1]
        if background:
            lines.append("bg: " + ". ".join(background))
        return lines

    def _round_info(self, reason: str, grounded: GroundedFrame, decision: Decision) -> dict[str, Any]:
        overlays = [(b.to_list(), f"fg {s:.2f}", FOREGROUND_COLOR) for b, s, _ in grounded.foreground]
        overlays += [(b.to_list(), f"bg {label} {s:.2f}", BACKGROUND_COLOR) for b, s, label in grounded.background]
        if decision.box is not None:
            overlays.append((decision.box.to_list(), "chosen", CHOSEN_COLOR))
        lines = self._text_lines() + [f"grounding ({reason}): {decision.reason}"]
        summaries = [c.summary() for c in decision.candidates]
        chosen = None if decision.chosen is None else decision.chosen.identity
        return {"round": {"kind": decision.kind, "state": decision.state, "chosen": chosen, "candidates": summaries},
                "overlays": overlays, "text_lines": lines, "grounding": reason, "decision": decision.reason,
                "candidates": summaries}


def build_chattracker(base: Tracker, settings: dict[str, Any] | None = None) -> ChatTracker:
    """Validate ``settings`` (the YAML ``chattracker:`` section) and build the configured describer and
    grounder by registry name around ``base``."""
    from chattracker.grounding.base import build_grounder
    from chattracker.mllm.base import build_describer

    settings = dict(settings or {})
    config = FusionConfig.from_dict(settings)
    grounder = build_grounder(config.grounder, **config.grounder_params)
    describer = None
    if config.foreground is None:
        params = dict(config.describer_params)
        if config.describer == "attributes" and "grounder" not in params:
            params["grounder"] = grounder
        describer = build_describer(config.describer, **params)
    return ChatTracker(base, describer=describer, grounder=grounder, config=config)
