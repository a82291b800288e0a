"""Weight-free, deterministic describer: what a detector and a colour table can say about the box.

Foreground: "[size] [colours] <category> [position]", e.g. "small white airplane at the top"
("person in black on the right" for people, whose colours are their clothes). The category comes
from the detection that overlaps the box (a grounder with ``detect``, such as YOLOX), else from one
in an enlarged crop around the box, else from the user's text, else "object". Colours are those
over-represented in the box compared with its surroundings. Background: first the same-class
look-alikes, nearest first, each named by a colour that sets it apart from the target, with a
position or size that does too ("person in white on the left"; a look-alike that no colour separates
is not named: its bare class would name the target too, and a position alone changes with the view),
then the other detected classes, nearest first.

Refinement with ``Feedback``: words that found other objects are dropped (except the category,
which is needed to find anything), and attributes that separate the target from the other
detections of its class (position, size, colour) are added. With a grounder that can ``ground``,
the candidate phrases are checked on the frame and the one whose best box is the target wins
(then the widest score gap to other boxes, then untried and shorter phrases), so the describer's
own output is verifiable and repeatable.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from chattracker.config import Range, Why, check_settings
from chattracker.errors import ConfigError
from chattracker.grounding.colors import color_match, color_names, region_colors, surrounding_colors
from chattracker.grounding.phrases import classes_of_word, head_noun
from chattracker.grounding.relations import position_match, size_match
from chattracker.mllm.base import Feedback, register_describer
from chattracker.types import Box, Description, Frame, Proposals

logger = logging.getLogger(__name__)

MATCH_IOU = 0.3  # a detection overlapping the box this much is taken to be the target
ZOOM_CONTEXT = 3.0  # crop side / box side when looking again at a target too small to detect
MIN_COLOR_SHARE = 0.2  # a colour must cover this much of the box centre to be named
DISTINCT_RATIO = 1.5  # ... and be this much more common inside than around the box
DOMINANT_SHARE = 0.45  # a colour this common inside is named even when the surroundings share it
SEPARATING_MARGIN = 0.5  # an attribute separates when it fits the target this much better than any distractor
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "center": "in the center"}


@dataclass
class TargetFacts:
    """What was measured on the frame; the description is composed from it."""

    category: str
    detected: bool
    colors: list[str]
    position: str | None  # where the box lies in the frame (thirds), None in the middle
    size: str | None  # "big"/"small" among same-class detections, None when alone
    separating: list[str] = field(default_factory=list)  # attribute phrases that single out the target
    background: list[str] = field(default_factory=list)
    distractors: int = 0
    lookalikes: list[str] = field(default_factory=list)  # same-class objects, each by what separates it


class AttributesDescriber:
    """``describe(image, box, feedback)`` from detections and colours; no model weights."""

    name = "attributes"

    def __init__(self, grounder: Any = None,
                 max_colors: Annotated[int, Range(0, 16), Why("colour words in the foreground phrase")] = 2,
                 max_background: Annotated[int, Range(0, 100), Why(
                     "nouns in the background list (GroundingDINO's dot-separated list)")] = 5,
                 max_lookalikes: Annotated[int, Range(0, 100), Why(
                     "look-alike classes named as distractors in the background")] = 2) -> None:
        if isinstance(grounder, str):
            from chattracker.grounding.base import build_grounder

            grounder = build_grounder(grounder)
        self.grounder = grounder
        for key, value in (("max_colors", max_colors), ("max_background", max_background),
                           ("max_lookalikes", max_lookalikes)):
            if value < 0:  # a negative count would slice from the end: all but the last few
                raise ConfigError(f"describer attributes.{key} must be 0 or more, got {value!r}")
        self.max_colors = int(max_colors)
        self.max_background = int(max_background)
        self.max_lookalikes = int(max_lookalikes)

    # --- measuring ----------------------------------------------------------------------------------

    def _detections(self, image: Frame) -> Proposals:
        detect = getattr(self.grounder, "detect", None)
        return detect(image) if callable(detect) else Proposals.empty()

    def facts(self, image: Frame, box: Box, text: str | None = None) -> TargetFacts:
        """Category, colours, position, size and neighbours of the boxed target."""
        box = Box.from_any(box)
        height, width = image.shape[:2]
        found = self._detections(image)
        ious = np.array([box.iou(found.box(i)) for i in range(len(found))])
        target = int(np.argmax(ious)) if len(found) and ious.max() >= MATCH_IOU else None
        category, detected = self._category(found, target, text)
        if target is None:
            zoomed = self._zoomed_label(image, box)
            if zoomed is not None:
                category, detected = self._category(Proposals(np.zeros((1, 4)), [1.0], [zoomed]), 0, text)

        colors = self._own_colors(image, box)

        cx, cy = box.center
        column = "left" if cx < width / 3 else "right" if cx > 2 * width / 3 else None
        row = "top" if cy < height / 3 else "bottom" if cy > 2 * height / 3 else None
        position = column or row

        same = [i for i in range(len(found)) if i != target and ious[i] < MATCH_IOU
                and found.labels[i] in classes_of_word(category)]
        peers = [box] + [found.box(i) for i in same]
        size = None
        separating: list[str] = []
        if same:
            separating = self._separating(image, box, peers, colors)
            areas = [p.area for p in peers]
            size = "big" if box.area >= max(areas) else "small" if box.area <= min(areas) else None
        others = [i for i in range(len(found)) if i != target and ious[i] < MATCH_IOU]
        others.sort(key=lambda i: float(np.hypot(*np.subtract(found.box(i).center, box.center))))
        own = set(classes_of_word(category))
        # The target's own class is named in the background only with what sets a look-alike apart:
        # a bare class would find the target itself and push the tracker away from it.
        background = list(dict.fromkeys(found.labels[i] for i in others if found.labels[i] not in own))
        lookalikes = self._lookalikes(image, box, category, [found.box(i) for i in others if i in same])
        return TargetFacts(category, detected, colors, position, size, separating,
                           background[: self.max_background], len(same), lookalikes)

    def _own_colors(self, image: Frame, box: Box) -> list[str]:
        """The colours that cover the box centre and are more common there than around it (else the
        dominant ones), most common first."""
        inside, around = region_colors(image, box), surrounding_colors(image, box)
        colors = [c for c in color_names() if inside[c] >= MIN_COLOR_SHARE and inside[c] > DISTINCT_RATIO * around[c]]
        if not colors:
            colors = [c for c in color_names() if inside[c] >= DOMINANT_SHARE]
        return sorted(colors, key=lambda c: -inside[c])[: self.max_colors]

    def _lookalikes(self, image: Frame, box: Box, category: str, peers: list[Box]) -> list[str]:
        """Phrases for the nearest same-class objects, each with the attributes (a colour, then
        position or size) that fit it clearly better than the target: "person in white on the left".
        The background's words must find the look-alike and not the target."""
        phrases: list[str] = []
        for peer in peers[: self.max_lookalikes]:
            colors = self._own_colors(image, peer)
            apart = self._separating(image, peer, [peer, box], colors)
            hues = [a for a in apart if a in colors]
            # A colour is the look-alike's own; where it lies and how big it looks are relative to what
            # is in view, and a search region shows another view ("person on the right" can be the
            # target there), so position and size only qualify a colour.
            if hues:
                phrases.append(self.compose(category, [], (hues + [a for a in apart if a not in colors])[:2]))
        return list(dict.fromkeys(phrases))

    def _zoomed_label(self, image: Frame, box: Box) -> str | None:
        """Class of the target seen in an enlarged crop around it: small objects (a 41x16 airplane)
        that the detector misses at frame scale are found once the crop is scaled to its input."""
        detect = getattr(self.grounder, "detect", None)
        if not callable(detect):
            return None
        height, width = image.shape[:2]
        region = box.scaled(ZOOM_CONTEXT).clip(width, height)
        x1, y1, x2, y2 = (int(round(v)) for v in region.to_xyxy())
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        found = detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
        local = Box(box.x - x1, box.y - y1, box.w, box.h)
        ious = [local.iou(found.box(i)) for i in range(len(found))]
        if not ious or max(ious) < MATCH_IOU:
            return None
        return found.labels[int(np.argmax(ious))]

    @staticmethod
    def _category(found: Proposals, target: int | None, text: str | None) -> tuple[str, bool]:
        """The detector's class; the text's own noun when it names that class ("girl" for person)."""
        noun = head_noun(text) if text else None
        if target is not None:
            label = found.labels[target]
            if noun and label in classes_of_word(noun):
                return noun, True
            return label, True
        return (noun or "object"), False

    @staticmethod
    def _separating(image: Frame, box: Box, peers: list[Box], colors: list[str]) -> list[str]:
        """Attribute phrases that fit the target clearly better than every same-class distractor."""
        height, width = image.shape[:2]
        out: list[str] = []
        for where, phrase in POSITION_PHRASES.items():
            scores = [position_match(p, peers, where, width, height) for p in peers]
            if scores[0] - max(scores[1:]) >= SEPARATING_MARGIN:
                out.append(phrase)
        for size in ("small", "big"):
            scores = [size_match(p, peers, size) for p in peers]
            if scores[0] - max(scores[1:]) >= SEPARATING_MARGIN:
                out.append(size)
        for color in colors:
            scores = [color_match(region_colors(image, p), color) for p in peers]
            if scores[0] - max(scores[1:]) >= SEPARATING_MARGIN:
                out.append(color)
        return out

    # --- composing ----------------------------------------------------------------------------------

    @staticmethod
    def compose(category: str, colors: list[str] = (), extras: list[str] = ()) -> str:
        """"small red car on the left"; for people the colour is their clothing: "man in black"."""
        sizes = [e for e in extras if e in ("big", "small")]
        places = [e for e in extras if e in POSITION_PHRASES.values()]
        colors = list(dict.fromkeys([e for e in extras if e not in sizes and e not in places] + list(colors)))
        if colors and "person" in classes_of_word(category):
            return " ".join(sizes + [category, "in", " and ".join(colors)] + places[:1])
        return " ".join(sizes + colors + [category] + places[:1])

    def describe(self, image: Frame, box: Box, feedback: Feedback | None = None) -> Description:
        box = Box.from_any(box)
        text = feedback.initial_text if feedback else None
        facts = self.facts(image, box, text)
        previous = feedback.history[-1].foreground if feedback and feedback.history else None
        if previous is None:
            foreground = self.compose(facts.category, facts.colors, facts.separating[:1])
            how = "first"
        else:
            foreground, how = self._refine(image, box, facts, feedback)  # type: ignore[arg-type]
        background = ". ".join(facts.lookalikes + facts.background)
        raw = json.dumps({"describer": self.name, "how": how, "facts": facts.__dict__,
                          "foreground": foreground, "background": background}, sort_keys=True)
        return Description(foreground, background, raw)

    def _refine(self, image: Frame, box: Box, facts: TargetFacts, feedback: Feedback) -> tuple[str, str]:
        negative = {w.lower() for w in feedback.negative_words}
        positive = {w.lower() for w in feedback.positive_words}
        tried = {a.foreground for a in feedback.history}
        category = facts.category
        if category.lower() in negative and not facts.detected:
            category = "object"  # an undetected guess that only found other things is worse than nothing
        colors = [c for c in facts.colors if c not in negative or c in positive]
        separating = [s for s in facts.separating if not set(s.split()) & (negative - positive)]
        last = feedback.history[-1]
        if not negative and last.top1_iou >= 0.5:
            return last.foreground, "kept: the target was found and no word found another object"
        candidates = []
        pool = colors + [s for s in separating if s not in colors]
        for count in range(0, min(3, len(pool)) + 1):
            for combo in itertools.combinations(pool, count):
                chosen = [c for c in combo if c in colors and c not in separating]
                extras = [c for c in combo if c not in chosen]
                candidates.append(self.compose(category, chosen, extras))
        candidates = list(dict.fromkeys(candidates))
        ground = getattr(self.grounder, "ground", None)
        if callable(ground):
            # Best: the target on top, then the widest score gap to the best other box, then untried
            # and short phrases.
            scored = [(*self._check(ground(image, [phrase]), box), phrase not in tried, -len(phrase.split()), phrase)
                      for phrase in candidates]
            best = max(scored)
            return best[-1], f"checked {len(candidates)} phrases with the grounder; top-1 IoU {best[0]:.3f}"
        # Without a grounder to check: the most specific untried phrase.
        fresh = [c for c in candidates if c not in tried] or candidates
        return max(fresh, key=lambda c: (len(c.split()), -candidates.index(c))), "added attributes"


    @staticmethod
    def _check(found: Proposals, box: Box) -> tuple[float, float]:
        """(IoU of the top box with the target, top target score minus best other score)."""
        if not len(found):
            return 0.0, 0.0
        order = np.argsort(-found.scores, kind="stable")
        ious = [box.iou(found.box(int(i))) for i in order]
        on_target = [float(found.scores[i]) for i, iou in zip(order, ious) if iou >= 0.5]
        elsewhere = [float(found.scores[i]) for i, iou in zip(order, ious) if iou < 0.5]
        gap = (max(on_target, default=0.0) - max(elsewhere, default=0.0))
        return round(float(ious[0]), 3), round(gap, 4)


@register_describer("attributes")
def build_attributes(**params: Any) -> AttributesDescriber:
    return AttributesDescriber(**check_settings("describer attributes", params, AttributesDescriber))
