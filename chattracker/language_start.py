"""Start tracking from a sentence alone: find the sentence's target on frame 1 (the natural-language
setting of TNL2K / OTB99-lang, JointNLT's "initialized by natural language").

Candidates come from the grounder (with the YOLOX grounder: the whole frame and enlarged tiles, so small
targets are found), are ranked by grounding score with the sentence's attribute words, and by motion when
the sentence says the target moves ("landing", "jogging") or stands still ("parked") and a later frame is
given. Where the detector's classes fall short of the sentence, two readings a person would make are added:
a look-alike class (a distant gull looks like an airplane to a COCO detector) and a pair ("the couple": two
people side by side). The describer then says, in its own words, what each top candidate is.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator

import cv2
import numpy as np
import yaml

from chattracker.config import Range, Why, check_instance, check_settings
from chattracker.errors import ConfigError, InputError
from chattracker.grounding.phrases import head_noun, parse_phrase, tokenize
from chattracker.types import Box, Frame, Proposals
from chattracker.video import LABEL_SCALE, fit_text

logger = logging.getLogger(__name__)


class NoTargetFound(InputError):
    """No candidate on frame 1 is credible for the sentence; the message lists what was found."""


@dataclass
class LanguageStartConfig:
    """How the target of a sentence is chosen on frame 1; every threshold says why it is there."""

    grounder: str = "yolox"
    # Lower than the wrapper's 0.25: on frame 1 nothing else can find the target, and a weak but
    # fitting detection (a 30 px gull) is better than none; min_score still decides credibility.
    grounder_params: dict[str, Any] = field(default_factory=lambda: {"score_threshold": 0.1})
    describer: str = "attributes"  # says what each top candidate is ("" = no descriptions)
    zoom_grid: Annotated[int, Range(1, 8), Why(
        "YOLOX: also detect on grid x grid enlarged tiles (1: whole frame only); small targets need 2")] = 2
    min_score: Annotated[float, Range(0.0, 1.0), Why(
        "the best candidate's final score must reach this to be credible (a look-alike seen at the detection "
        "threshold, 0.1 x 0.6, still is)")] = 0.05
    lookalike_discount: Annotated[float, Range(0.0, 1.0), Why(
        "a detection of a look-alike class scores this fraction of a detection of the named class")] = 0.6
    pair_max_gap: Annotated[float, Range(0.0, None), Why(
        "\"couple\": two boxes at most this many box widths apart make one pair")] = 0.5
    motion_gap: Annotated[int, Range(0, None), Why(
        "frames between frame 1 and the frame that tells what moves")] = 5
    motion_weight: Annotated[float, Range(0.0, 1.0), Why(
        "share of the score decided by motion when the sentence speaks of it")] = 0.4
    moving_shift: Annotated[float, Range(0.0, 1.0), Why(
        "a box moved if it shifted this fraction of its size beyond the scene's own shift")] = 0.1
    max_candidates: Annotated[int, Range(1, None), Why("candidates shown and drawn")] = 5

    def __post_init__(self) -> None:
        check_instance("language_start", self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "LanguageStartConfig":
        return cls(**check_settings("language_start", data, cls))


@dataclass
class Candidate:
    """One box the sentence may mean, with the evidence for it."""

    box: Box
    score: float  # final ranking score
    grounding: float  # the grounder's score (class and attribute words)
    reading: str  # "as said", "look-alike <class>", "pair"
    words: dict[str, float] = field(default_factory=dict)  # support of each word of the sentence
    moved: float | None = None  # shift beyond the scene's, in box sizes (None: not measured)
    description: str = ""  # what the describer calls it

    def why(self) -> str:
        parts = [f"grounding {self.grounding:.2f}"]
        parts += [f"'{word}' {value:.2f}" for word, value in self.words.items()]
        if self.reading != "as said":
            parts.append(self.reading)
        if self.moved is not None:
            parts.append(f"moved {self.moved:.2f} box sizes")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box.to_list()], "score": round(self.score, 4),
                "grounding": round(self.grounding, 4), "reading": self.reading,
                "words": {k: round(v, 4) for k, v in self.words.items()},
                "moved": None if self.moved is None else round(self.moved, 4), "description": self.description}


@dataclass
class LanguageStart:
    """The chosen target, the runners-up, and what the detector saw."""

    text: str
    candidates: list[Candidate]  # best first; candidates[0] is the target
    detected: list[str]  # "person 0.83" for every detection on frame 1
    motion: str | None  # "moving", "still" or None: what the sentence says of motion
    seconds: float = 0.0
    credible: bool = True  # False: the best candidate is below min_score (taken only when asked to)

    @property
    def target(self) -> Candidate:
        return self.candidates[0]

    def lines(self) -> list[str]:
        """What the CLI prints: the chosen box and why, then the runners-up."""
        best = self.target
        out = [f"language start: {self.text!r} -> box {','.join(f'{v:.1f}' for v in best.box.to_list())} "
               f"(score {best.score:.2f}: {best.why()})" + (f"; the describer calls it {best.description!r}" if best.description else "")]
        for rank, other in enumerate(self.candidates[1:], start=2):
            out.append(f"  runner-up {rank}: box {','.join(f'{v:.1f}' for v in other.box.to_list())} score {other.score:.2f} "
                       f"({other.why()})" + (f" {other.description!r}" if other.description else ""))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "credible": self.credible, "motion": self.motion, "seconds": round(self.seconds, 3), "detected": self.detected,
                "target": self.target.to_json(), "candidates": [c.to_json() for c in self.candidates]}


# --- what the sentence says ----------------------------------------------------------------------------

@cache
def _words() -> dict[str, Any]:
    text = resources.files("chattracker").joinpath("data/language_start.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def motion_of(text: str) -> str | None:
    """"moving" for "airplane landing", "still" for "parked car", None when the sentence does not say."""
    tokens = set(tokenize(text))
    if tokens & set(_words()["still_words"]):
        return "still"
    if tokens & set(_words()["moving_words"]):
        return "moving"
    return None


def lookalikes(classes: Iterable[str]) -> list[str]:
    """COCO classes a small detector takes the given ones for (``data/language_start.yaml``)."""
    table = _words()["lookalike_classes"]
    return list(dict.fromkeys(other for name in classes for other in table.get(name, ())))


def _is_pair(text: str) -> bool:
    head = head_noun(text)
    return head is not None and head in _words()["pair_words"]


# --- finding the target --------------------------------------------------------------------------------

def _ground(grounder: Any, image: Frame, phrase: str, grid: int) -> Proposals:
    zoomed = getattr(grounder, "ground_zoomed", None)
    return zoomed(image, [phrase], grid) if callable(zoomed) and grid > 1 else grounder.ground(image, [phrase])


def _candidates_of(proposals: Proposals, phrase: str, reading: str, factor: float) -> list[Candidate]:
    words, matrix = (proposals.token_scores or {}).get(phrase, ([], np.zeros((len(proposals), 0))))
    head = parse_phrase(phrase).head
    out = []
    for i in range(len(proposals)):
        support = {w: float(matrix[i][j]) for j, w in enumerate(words) if w != head and j < len(matrix[i])}
        score = float(proposals.scores[i]) * factor
        out.append(Candidate(proposals.box(i), score, score, reading, {w: v for w, v in support.items() if v > 0}))
    return out


def _replace_head(text: str, new_head: str) -> str:
    """The sentence with its head noun replaced ("the seagull flying" -> "the airplane flying")."""
    head = head_noun(text)
    tokens = tokenize(text)
    return " ".join(new_head if token == head else token for token in tokens)


def _pairs(people: list[Candidate], max_gap: float) -> list[Candidate]:
    """Union boxes of two neighbouring candidates of similar height ("the couple")."""
    out = []
    for a, b in itertools.combinations(people, 2):
        ax1, ay1, ax2, ay2 = a.box.to_xyxy()
        bx1, by1, bx2, by2 = b.box.to_xyxy()
        width = max(a.box.w, b.box.w)
        gap = max(bx1 - ax2, ax1 - bx2, 0.0)
        similar = min(a.box.h, b.box.h) / max(a.box.h, b.box.h) > 0.6
        level = abs(a.box.center[1] - b.box.center[1]) < 0.5 * max(a.box.h, b.box.h)
        if gap <= max_gap * width and similar and level:
            union = Box.from_xyxy(min(ax1, bx1), min(ay1, by1), max(ax2, bx2), max(ay2, by2))
            words = {w: (a.words.get(w, 0) + b.words.get(w, 0)) / 2 for w in {**a.words, **b.words}}
            score = (a.grounding + b.grounding) / 2
            out.append(Candidate(union, score, score, "pair", words))
    return out


def _dedupe(candidates: list[Candidate], iou: float = 0.7) -> list[Candidate]:
    kept: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: -c.score):
        if all(candidate.box.iou(k.box) < iou for k in kept):
            kept.append(candidate)
    return kept


def shift_beyond_scene(first: Frame, later: Frame, box: Box) -> float:
    """How far the box's content moved between the frames, beyond the whole scene's shift (camera
    motion), in box sizes: template matching in a window three times the box, phase correlation for
    the scene."""
    gray1 = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray2 = cv2.cvtColor(later, cv2.COLOR_RGB2GRAY).astype(np.float32)
    (scene_dx, scene_dy), _ = cv2.phaseCorrelate(gray1, gray2)
    height, width = gray1.shape
    inner = box.clip(width, height)
    x1, y1, x2, y2 = (int(round(v)) for v in inner.to_xyxy())
    if x2 - x1 < 4 or y2 - y1 < 4:
        return 0.0
    window = box.scaled(3.0).clip(width, height)
    wx1, wy1, wx2, wy2 = (int(round(v)) for v in window.to_xyxy())
    template, search = gray1[y1:y2, x1:x2], gray2[wy1:wy2, wx1:wx2]
    if search.shape[0] < template.shape[0] or search.shape[1] < template.shape[1]:
        return 0.0
    response = cv2.matchTemplate(search, template, cv2.TM_CCOEFF_NORMED)
    _, _, _, (mx, my) = cv2.minMaxLoc(response)
    dx, dy = wx1 + mx - x1 - scene_dx, wy1 + my - y1 - scene_dy
    return float(np.hypot(dx, dy) / max(np.sqrt(inner.w * inner.h), 1.0))


def find_target(image: Frame, text: str, grounder: Any, config: LanguageStartConfig = LanguageStartConfig(),
                describer: Any = None, later: Frame | None = None, require_credible: bool = True,
                any_object: bool = False) -> LanguageStart:
    """The box on ``image`` that ``text`` most likely means, with the runners-up and the reasons.

    Raises ``NoTargetFound`` (one line listing the detections) when no candidate is credible; with
    ``require_credible`` False a weak best candidate is taken and marked ``credible: false``; with
    ``any_object`` too (a benchmark, where every sequence needs a start) and no candidate at all, the most
    confident detection of any class is; then only a frame without any detection raises."""
    started = time.perf_counter()
    text = " ".join(str(text).split())
    if not text:
        raise InputError("a language start needs a sentence (--text)")
    parsed = parse_phrase(text)
    candidates = _candidates_of(_ground(grounder, image, text, config.zoom_grid), text, "as said", 1.0)
    if parsed.head and _is_pair(text):
        variant = _replace_head(text, "people")
        candidates += _pairs(_candidates_of(_ground(grounder, image, variant, config.zoom_grid), variant, "pair", 1.0),
                             config.pair_max_gap)
    for other in lookalikes(parsed.classes):
        variant = _replace_head(text, other)
        candidates += _candidates_of(_ground(grounder, image, variant, config.zoom_grid), variant,
                                     f"look-alike {other}", config.lookalike_discount)
    candidates = _dedupe(candidates)
    motion = motion_of(text)
    if motion and later is not None:
        for candidate in candidates:
            candidate.moved = shift_beyond_scene(image, later, candidate.box)
            fits = (candidate.moved >= config.moving_shift) == (motion == "moving")
            candidate.score = candidate.grounding * (1 - config.motion_weight + config.motion_weight * float(fits))
    candidates.sort(key=lambda c: -c.score)
    found = _detections(grounder, image, config.zoom_grid)
    detected = [f"{label} {score:.2f}" for _, label, score in found]
    credible = bool(candidates) and candidates[0].score >= config.min_score
    if not candidates and not require_credible and any_object:
        # A benchmark run must commit to a box, as a VL tracker's grounding head always does: the most
        # confident detection of any class, marked not credible (an empty frame still fails the sequence).
        candidates = _dedupe([Candidate(box, score, score, f"any object: {label}") for box, label, score in found])
    if not candidates or (require_credible and not credible):
        what = (f"the best candidate scores {candidates[0].score:.2f} < {config.min_score}" if candidates
                else f"nothing of class {', '.join(parsed.classes) or '(no COCO class for ' + repr(parsed.head) + ')'}")
        raise NoTargetFound(f"no credible target for {text!r} on frame 1: {what}; the detector found "
                            f"{', '.join(detected[:8]) or 'nothing'}; give --box, or reword the sentence")
    candidates = candidates[: config.max_candidates]
    if describer is not None:
        for candidate in candidates[:3]:
            try:
                candidate.description = describer.describe(image, candidate.box, None).foreground
            except Exception as error:  # a describer that fails costs only the printed description
                logger.warning("language start: the describer failed on a candidate (%s)", error)
    return LanguageStart(text, candidates, detected, motion, time.perf_counter() - started, credible)


def _detections(grounder: Any, image: Frame, grid: int) -> list[tuple[Box, str, float]]:
    """Every detection on the frame as (box, class, score), best first (empty for a grounder that cannot list them)."""
    zoomed = getattr(grounder, "zoomed_detections", None)
    if callable(zoomed):
        found = zoomed(image, grid)
        return [(Box.from_any(b), grounder.classes[c], float(s)) for b, c, s in zip(found.boxes, found.class_ids, found.scores)]
    detect = getattr(grounder, "detect", None)
    if callable(detect):
        listed = detect(image)
        return [(listed.box(i), listed.labels[i], float(listed.scores[i])) for i in range(len(listed))]
    return []


def build_language_start(settings: dict[str, Any] | None = None) -> tuple[LanguageStartConfig, Any, Any]:
    """The config, its grounder and its describer (None when ``describer`` is empty)."""
    from chattracker.grounding.base import build_grounder

    config = LanguageStartConfig.from_dict(settings)
    grounder = build_grounder(config.grounder, **config.grounder_params)
    describer = None
    if config.describer:
        from chattracker.rpo import build_describer_for

        describer = build_describer_for(config.describer, grounder)
    return config, grounder, describer


def peek(frames: Iterable[Frame], count: int) -> tuple[list[Frame], Iterator[Frame]]:
    """The first ``count`` frames, and an iterator that still yields every frame from the first."""
    iterator = iter(frames)
    head = list(itertools.islice(iterator, count))
    return head, itertools.chain(head, iterator)


def start_from_frames(frames: Iterable[Frame], text: str, config: LanguageStartConfig, grounder: Any,
                      describer: Any = None, require_credible: bool = True,
                      any_object: bool = False) -> tuple[LanguageStart, Frame, Iterator[Frame]]:
    """``find_target`` on the first frame, with the frame ``motion_gap`` later for motion; returns the
    start, frame 1 and the frames given back whole for tracking."""
    head, frames_again = peek(frames, config.motion_gap + 1)
    if not head:
        raise InputError("no frames to start from")
    later = head[-1] if len(head) > 1 else None
    start = find_target(head[0], text, grounder, config, describer, later, require_credible, any_object)
    return start, head[0], frames_again


def settings_of_spec(spec: str) -> dict[str, Any]:
    """The ``language_start`` section of a tracker YAML config (defaults for a registered name)."""
    from chattracker.config import load_tracker_config

    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        return load_tracker_config(spec).language_start
    return {}


def start_for_spec(spec: str, tracker: Any, frames: Iterable[Frame],
                   text: str) -> tuple[Box | None, Iterable[Frame], dict | None]:
    """Frame 1's box for a benchmark sequence from its sentence alone, and the choice as JSON (the eval
    driver writes it as ``<seq>_start.json``); None and no record when the tracker starts from language
    itself (it reports its own box). Every sequence gets a start, credible or not, so that the average
    is over all of them, as for a VL tracker."""
    from chattracker.tracking import starts_from_language

    if starts_from_language(tracker):
        return None, frames, None
    config, grounder, describer = build_language_start(settings_of_spec(spec))
    start, _, frames_again = start_from_frames(frames, text, config, grounder, describer, require_credible=False,
                                               any_object=True)
    return start.target.box, frames_again, start.to_json()


# --- the picture ---------------------------------------------------------------------------------------

def draw_candidates(image: Frame, start: LanguageStart, path: str | Path, truth: Box | None = None) -> Path:
    """Frame 1 with the candidates (green: the target, orange: runners-up, yellow: ``truth``), written
    atomically as PNG."""
    # Drawn at the frame's own size, as the video is: the boxes line up with boxes.txt pixel for pixel.
    canvas = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    thickness = max(1, int(round(canvas.shape[1] / 400)))

    def draw(box: Box, color: tuple[int, int, int], label: str, width: int) -> None:
        x1, y1, x2, y2 = (int(round(v)) for v in box.to_xyxy())
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, width)
        cv2.putText(canvas, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)

    if truth is not None:
        draw(truth, (0, 255, 255), "truth", thickness)
    for rank, candidate in reversed(list(enumerate(start.candidates, start=1))):
        draw(candidate.box, (0, 200, 0) if rank == 1 else (0, 140, 255), f"#{rank} {candidate.score:.2f}",
             thickness * (2 if rank == 1 else 1))
    rows = fit_text(start.text, canvas.shape[1] - 12)
    for row, line in enumerate(rows):
        y = canvas.shape[0] - 8 - 16 * (len(rows) - 1 - row)
        cv2.putText(canvas, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise InputError(f"cannot encode {path}")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(encoded.tobytes())
    temporary.replace(path)
    return path


def config_json(config: LanguageStartConfig) -> dict[str, Any]:
    return asdict(config)
