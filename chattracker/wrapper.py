"""``ChatTracker``: wrap any tracker with semantic tracking and foreground verification.

The wrapper is itself a tracker (same protocol), so the CLI and the eval runner treat a plain and an
enhanced tracker the same way. Per frame: the base tracker predicts; on a sparse schedule the
grounder finds the foreground and background descriptions; verification keeps the base box, or
replaces it (and re-initialises the base tracker) when the evidence that the base lost the target
is strong. Descriptions come from RPO on the first frame (cached on disk).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chattracker.errors import ChatTrackerError, ConfigError
from chattracker.fusion.appearance import AppearanceMemory
from chattracker.fusion.candidates import Candidate, embed_candidates, gather_candidates, intersection_area
from chattracker.fusion.colour import ColourEvidence
from chattracker.fusion.decision import SELECTIONS, SIZE_SIGN, Decision, VerificationConfig, Verifier
from chattracker.fusion.embedding import EMBEDDERS, build_embedder
from chattracker.fusion.identities import IdentityTracker
from chattracker.fusion.motion import BoxKalman
from chattracker.fusion.schedule import GroundingSchedule
from chattracker.fusion.scoring import score_candidates
from chattracker.fusion.semantic import GroundedFrame, ground, merge_grounded, search_region
from chattracker.types import Box, Description, Frame, Tracker, TrackResult

logger = logging.getLogger(__name__)

REGIONS = ("search", "frame")
FOREGROUND_COLOR = (255, 210, 0)
BACKGROUND_COLOR = (230, 60, 60)
CHOSEN_COLOR = (40, 220, 80)


@dataclass
class FusionConfig:
    """Every fusion setting (the ``chattracker:`` section of a YAML config); ablations included."""

    describer: str = "attributes"
    describer_params: dict[str, Any] = field(default_factory=dict)
    grounder: str = "yolox"
    grounder_params: dict[str, Any] = field(default_factory=dict)
    rpo: dict[str, Any] = field(default_factory=dict)  # RPOConfig fields
    rpo_cache: bool = True
    cache_dir: str | None = None  # default: rpo/ in $CHATTRACKER_CACHE or the user cache dir
    foreground: str | None = None  # given: skip RPO and use these descriptions
    background: str | None = None
    ground_every: int = 10  # periodic grounding interval in frames (0: only on triggers)
    ground_cooldown: int = 3  # smallest gap between rounds pulled forward by a trigger
    region: str = "search"  # ground on an enlarged search region or the whole frame
    search_scale: float = 2.0
    frame_every: int = 0  # every K-th round also grounds the whole frame (0: never); always while lost
    min_region: float = 128.0
    proposal_min_score: float = 0.2
    max_proposals: int = 6  # foreground proposals a round weighs besides the base box (best-scored)
    embed_min_score: float = 0.4  # proposals found with at least this score get an appearance embedding
    embed_limit: int = 4  # ... at most this many per round (the base box always has one)
    redetect: bool = True  # class-agnostic candidates from a Siamese template (NanoTrack's networks)
    redetect_min_score: float = 0.5  # match score a re-detection needs
    redetect_windows: int = 6  # search windows over the frame while the target seems lost
    use_background: bool = True
    appearance: str = "auto"  # appearance embedding: auto | nanotrack | mobilenetv2 | osnet | osnet_fp32 | hsv_hog;
    # auto = osnet for a person target, else nanotrack (bench/appearance.py, development set: same-class
    # ROC AUC pooled osnet 0.93 (its int8 form, the one run, as the float32 one), nanotrack 0.86, mobilenetv2 0.83,
    # hsv_hog 0.78)
    appearance_params: dict[str, Any] = field(default_factory=dict)
    memory_size: int = 8
    novelty: float = 0.8  # a confirmed look less similar than this to the memory (calibrated) is remembered
    refresh_template: bool = True  # re-initialise the base tracker on a confirmed novel look
    refresh_gap: int = 50  # frames between two template refreshes at least
    refresh_scale: float = 2.0  # ... and only when the detector's box of the target changed area this much since the
    # template (1.5 re-templated walkers on the development set and cost them about 1 AUC each; airplane-1 grows 5x)
    refresh_aspect: float = 1.4  # ... while the confirming proposal's aspect ratio stayed within this
    # factor of the template's (a scale change, not an occlusion or a deformation)
    refresh_iou: float = 0.7  # ... and the base box, which the new template is cut from, agrees this well with
    # the detector's box (a misaligned box makes a template with background in it, which drifts)
    refresh_rounds: int = 2  # ... seen in this many confirmed rounds in a row (one is as likely a partial
    # detection)
    refresh_occluded: float = 0.3  # ... and never a shrink whose missing part lies this much under another found
    # object (a walker half hidden by a car reads as a change of scale)
    reinit_size: str = "memory"  # a recovery re-initialises with the remembered size, or the "proposal"'s
    refresh_box: str = "base"  # re-initialise on the base box or on the confirming proposal
    redescribe: bool = True  # run RPO again after a recovery, and when a new look-alike appears near the target
    redescribe_gap: int = 150  # frames between two re-descriptions at least
    max_foreground: int = 3  # descriptions kept (the first one always)
    verification: VerificationConfig = field(default_factory=VerificationConfig)

    @classmethod
    def from_dict(cls, settings: dict[str, Any], section: str = "chattracker") -> "FusionConfig":
        """Validate a flat settings mapping (fusion and verification keys side by side) with the shared
        settings check: unknown keys and wrong types are one ``ConfigError`` naming the key."""
        from chattracker.config import check_keys, check_settings

        own = {f.name for f in dataclasses.fields(cls)} - {"verification"}
        verification = {f.name for f in dataclasses.fields(VerificationConfig)}
        check_keys(section, dict(settings), own | verification)
        values = check_settings(section, {k: v for k, v in settings.items() if k in own}, cls)
        vvalues = check_settings(section, {k: v for k, v in settings.items() if k in verification}, VerificationConfig)
        config = cls(**values, verification=VerificationConfig(**vvalues))
        config.check(section)
        return config

    def check(self, section: str = "chattracker") -> None:
        if self.region not in REGIONS:
            raise ConfigError(f"{section}: region must be one of {', '.join(REGIONS)}, got {self.region!r}")
        if self.verification.selection not in SELECTIONS:
            raise ConfigError(f"{section}: selection must be one of {', '.join(SELECTIONS)}, "
                              f"got {self.verification.selection!r}")
        for key in ("ground_every", "ground_cooldown", "refresh_gap", "redescribe_gap"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{section}: {key} must be >= 0, got {getattr(self, key)}")
        from chattracker.rpo import RPOConfig

        RPOConfig.from_dict(self.rpo)  # unknown or bad RPO settings fail here, not at the first frame
        if self.reinit_size not in ("memory", "proposal"):
            raise ConfigError(f"{section}: reinit_size must be memory or proposal, got {self.reinit_size!r}")
        if self.refresh_box not in ("base", "proposal"):
            raise ConfigError(f"{section}: refresh_box must be base or proposal, got {self.refresh_box!r}")
        if self.appearance != "auto" and self.appearance not in EMBEDDERS.names():
            raise ConfigError(f"{section}: appearance must be auto or one of {', '.join(EMBEDDERS.names())}, "
                              f"got {self.appearance!r}")
        v = self.verification
        if not 0.0 <= v.colour_miss <= v.colour_fit <= 1.0:
            raise ConfigError(f"{section}: need 0 <= colour_miss <= colour_fit <= 1, got colour_miss "
                              f"{v.colour_miss} and colour_fit {v.colour_fit}")
        if self.memory_size < 1 or self.max_foreground < 1 or self.refresh_rounds < 1:
            raise ConfigError(f"{section}: memory_size, max_foreground and refresh_rounds must be >= 1")
        for key in ("refresh_iou", "refresh_occluded"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{section}: {key} must be in [0, 1], got {getattr(self, key)}")


class ChatTracker:
    """A tracker that wraps ``base`` (any object of the tracker protocol)."""

    def __init__(self, base: Tracker, describer: Any = None, grounder: Any = None,
                 config: FusionConfig | None = None, **settings: Any) -> None:
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
        self.name = f"chattracker:{getattr(base, 'name', type(base).__name__)}"
        self.verifier = Verifier(self.config.verification)
        self.schedule = GroundingSchedule(self.config.ground_every, self.config.ground_cooldown,
                                          self.config.verification.low_score, self.config.verification.motion_gate)
        self._embedders: dict[str, Any] = {}
        self._redetector: Any = None
        self.redetector: Any = None
        self._suspect = False
        self._stray_rounds = 0
        self._ever_confirmed = False
        self._colour_lost_since: int | None = None
        self._graded = True
        self._all_descriptions: list[Description] = []
        self._description_frames: list[tuple[int, str]] = []
        self.embedder: Any = None
        self.identities = IdentityTracker()
        self.colours = ColourEvidence()
        self.memory = AppearanceMemory(self.embedder, self.config.memory_size)
        self.descriptions: list[Description] = []
        self.events: list[dict[str, Any]] = []
        self.ground_truth: np.ndarray | None = None
        self.frame_index = 0
        self._kalman: BoxKalman | None = None
        self._last_refresh = 0
        self._rescaled_rounds = 0
        self._round_background: list[Box] = []
        self._last_redescribe = 0
        self._absent = False
        self.grounding_seconds = 0.0
        self.grounding_rounds = 0

    # -- protocol ---------------------------------------------------------------------------------------
    def initialize(self, frame: Frame, box: Box, text: str | None = None) -> None:
        box = Box.from_any(box)  # numpy rows (np.loadtxt(...)[0]) are the natural call
        self.base.initialize(frame, box, text)
        self.frame_index = 0
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
        self.identities.reset(box, self.memory.entries[0] if self.memory.entries else None)
        self.verifier.reset()
        self.events = []
        self._last_refresh = self._last_redescribe = 0
        self._rescaled_rounds = 0
        self.grounding_seconds, self.grounding_rounds = 0.0, 0
        self._text = text
        self._template = box
        self._template_proposal: Box | None = None
        self._absent = False
        self._suspect = False
        self._stray_rounds = 0
        self._ever_confirmed = False
        self._colour_lost_since = None
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
        reason = self.schedule.due(self.frame_index, base_score, motion, self._colour_hurry())
        info: dict[str, Any] = {"base_box": None if stand_in else base_box.to_list(),
                                "base_score": result.score, "text_lines": self._text_lines()}
        if reason is None:
            if stand_in or (self._absent and (base_score is None or base_score < self.config.verification.low_score)):
                # Declared absent (by the base or the last grounding round) and the base is still unsure.
                absent_score = self.config.verification.absent_score
                score = absent_score if result.score is None else min(result.score, absent_score)
                return TrackResult(None, score, {**info, "decision": "absent"})
            self._absent = False
            self._kalman.update(base_box)
            return TrackResult(base_box, result.score, info)

        grounded = self._ground(frame, base_box, prior)
        decision = self._verify(frame, base_box, base_score, prior, grounded)
        if (decision.reinitialize and decision.box is not None and self.config.reinit_size == "memory"
                and not decision.keep_size):
            decision = dataclasses.replace(decision, box=self._remembered_size(decision.box))
        if stand_in and decision.box is base_box:
            if decision.confirming is not None:
                # The base lost the target but the grounder finds it where motion expects it.
                decision = dataclasses.replace(decision, box=decision.confirming.box, reinitialize=True,
                                               confirmed=False, chosen=decision.confirming, kind="recovered",
                                               reason="recovered (base reports none)")
            else:
                decision = dataclasses.replace(decision, box=None, kind="absent", chosen=None,
                                               reason="absent (base reports none)")
        self._absent = decision.box is None
        base = decision.candidates[0] if decision.candidates else None
        # The next round searches the whole frame when the kept base box sits on a distractor, lacks
        # the described colour, or looks unfamiliar while its score says nothing of its confidence
        # (a success flag).
        kept = base is not None and decision.box is base_box
        v = self.config.verification
        self._ever_confirmed = self._ever_confirmed or decision.confirmed
        # A kept box the detector does not confirm, of the wrong size or looking like nothing of the
        # target, two rounds in a row may have been left behind (on an occluder's edge, a patch of
        # background) while the target walked on out of its search region. Only where the detector has
        # confirmed the target before: a whole-frame search cannot find what the detector never sees.
        stray = kept and not decision.confirmed and (SIZE_SIGN in self.verifier.last_signs
                                                     or base.appearance < v.unfamiliar)
        self._stray_rounds = self._stray_rounds + 1 if stray else 0
        self._suspect = kept and (decision.chosen is not base
                                  or (not self._graded and base.appearance < v.min_appearance)
                                  or (base.colour is not None and base.colour < v.colour_miss)
                                  or (self._ever_confirmed and self._stray_rounds >= v.drift_rounds))
        self._act(frame, decision)
        if decision.box is not None:
            self._kalman.update(decision.box)
        info.update(self._round_info(reason, grounded, decision))
        score = result.score
        if decision.box is None:
            score = 0.0 if score is None else min(score, self.config.verification.absent_score)
        elif decision.box is not base_box and decision.chosen is not None:
            score = decision.chosen.grounding
        return TrackResult(decision.box, score, info)

    # -- parts ------------------------------------------------------------------------------------------
    def _colour_hurry(self) -> bool:
        """Rounds come early (every ``ground_cooldown`` frames) while the base box has lacked the described
        colour round after round: the target may be re-emerging elsewhere. Only for ``2 * ground_every``
        frames from the moment that first held, so a target whose colour really changed (shade, light)
        costs a few extra rounds, not a grounding rate three times the usual for the rest of the video."""
        if not self.verifier.colour_lost:
            self._colour_lost_since = None
            return False
        if self._colour_lost_since is None:
            self._colour_lost_since = self.frame_index
        return self.frame_index - self._colour_lost_since <= 2 * self.config.ground_every

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
        if region is not None and (self._suspect or (every > 0 and self.grounding_rounds % every == every - 1)):
            # The whole frame too, now and then and while the target seems lost: a look-alike that
            # took the base box away leaves the target outside the search region.
            wide = ground(self.grounder, frame, foreground, background, None, self.config.proposal_min_score)
            grounded = merge_grounded(grounded, wide)
        self.grounding_seconds += time.perf_counter() - start
        self.grounding_rounds += 1
        return grounded

    def _verify(self, frame: Frame, base_box: Box, base_score: float | None, prior: Box,
                grounded: GroundedFrame) -> Decision:
        """Candidates -> identities -> scores -> decision: one grounding round, top to bottom."""
        c = self.config.verification
        candidates = gather_candidates(base_box, grounded, self._redetect(frame, base_box, base_score, prior),
                                       self.config.max_proposals)
        embed_candidates(frame, candidates, self.embedder, self.config.embed_min_score, self.config.embed_limit)
        for candidate in [*candidates, *candidates[0].inner]:
            candidate.colour = self.colours.support(frame, candidate.box)
        target_before = self.identities.target
        self.identities.update(candidates)
        kalman = self._kalman
        assert kalman is not None
        self._round_background = [b for b, _, _ in grounded.background]
        score_candidates([*candidates, *candidates[0].inner], self.memory, self.identities.distractor_embeddings(), prior,
                         self._round_background, kalman.distance, c)
        truth = None
        if self.ground_truth is not None and self.frame_index < len(self.ground_truth):
            row = self.ground_truth[self.frame_index]
            truth = Box.from_any(row) if np.all(np.isfinite(row)) else Box(0.0, 0.0, 0.0, 0.0)
        decision = self.verifier.decide(candidates, base_score, self.memory, target_before, truth, self._graded)
        self.identities.assign(decision.chosen, candidates, c.colour_miss, c.colour_fit, c.appearance_drop)
        return decision

    def _redetect(self, frame: Frame, base_box: Box, base_score: float | None, prior: Box) -> list[tuple[Box, float]]:
        """Template re-detections: a window at the motion prior every round; a coarse grid of the
        whole frame while the target seems lost (low base score, an unfamiliar base box last round,
        declared absent)."""
        if self.redetector is None:
            return []
        c = self.config
        size = self.memory.typical_size() if self.memory.boxes else None
        centers = [prior.center]
        lost = self._absent or self._suspect or (base_score is not None and base_score < c.verification.low_score)
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
        """Re-initialise the base tracker, remember new looks, re-describe after a recovery."""
        if decision.box is None:
            return
        if decision.reinitialize:
            self.base.initialize(frame, decision.box, self._text)
            self._template = decision.box
            self._template_proposal = None
            self._rescaled_rounds = 0
            self.events.append({"frame": self.frame_index + 1, "event": "reinitialize", "box": decision.box.to_list(),
                                "reason": decision.reason})
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
                and (base.colour is None or base.colour >= self.config.verification.colour_miss)):
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
                   and c.appearance >= self.config.verification.min_appearance and c.box.iou(near) > 0
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
        return {"round": {"kind": decision.kind, "candidates": [c.summary() for c in decision.candidates]},
                "overlays": overlays, "text_lines": lines, "grounding": reason, "decision": decision.reason,
                "candidates": [c.summary() for c in decision.candidates]}


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
