"""Step 1 of a grounding round: the candidates for the target's box.

The base tracker's box is always a candidate. The grounder's foreground proposals are the others;
a proposal that overlaps the base box is the same object and *confirms* it instead of standing as a
second candidate, so every candidate is one object and identities can be kept per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chattracker.fusion.semantic import GroundedFrame
from chattracker.types import Box

BASE = "base"
REDETECT = "redetect"  # source of the template re-detector's candidates


@dataclass
class Candidate:
    """One object that may be the target, with everything later steps attach to it."""

    box: Box
    source: str  # "base" or the phrase (or re-detector) that found it
    grounding: float  # the finding score (the base: its confirming proposal's, 0 when none)
    label: str = ""
    confirming: "Candidate | None" = None  # the base only: the proposal that overlapped it
    inner: "list[Candidate]" = field(default_factory=list, repr=False)  # the base only: objects inside it
    embedding: np.ndarray | None = field(default=None, repr=False)
    identity: int = 0  # step 2: the object's identity across rounds
    hits: int = 1  # rounds in a row this identity was found
    role: str = "new"  # the identity's role before this round: target, distractor or new
    appearance: float = 0.0  # step 3: similarity to the remembered target
    distractor: float = 0.0  # ... and to the remembered distractors
    motion: float = 0.0  # exp(-distance to the motion prior)
    background: float = 0.0  # overlap with a background proposal
    colour: float | None = None  # support of the description's colour words (None: no usable words)
    inner_of_base: bool = False  # found inside a much larger base box (a box grown over the target)
    features: np.ndarray | None = field(default=None, repr=False)  # step 3b: the learned score's inputs
    total: float = 0.0  # step 3c: the learned log-odds that this candidate is the target

    @property
    def persistent(self) -> bool:
        return self.hits >= 2

    def summary(self) -> dict:
        return {"box": self.box.to_list(), "source": self.source, "identity": self.identity, "role": self.role,
                "total": round(self.total, 4), "appearance": round(self.appearance, 4),
                "distractor": round(self.distractor, 4), "grounding": round(self.grounding, 4),
                "motion": round(self.motion, 4), "background": round(self.background, 4),
                "colour": None if self.colour is None else round(self.colour, 4), "inner": self.inner_of_base,
                "features": None if self.features is None else [round(float(v), 5) for v in self.features]}


def intersection_area(*boxes: Box) -> float:
    """The area all ``boxes`` share."""
    x1, y1 = max(b.x for b in boxes), max(b.y for b in boxes)
    x2, y2 = min(b.x + b.w for b in boxes), min(b.y + b.h for b in boxes)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def same_object(a: Box, b: Box, iou: float = 0.5, cover: float = 0.7) -> bool:
    """Two boxes of one object: they overlap (IoU), or one mostly lies inside the other (a tracker's
    tight box inside a detector's loose one, a torso inside a whole person)."""
    if a.iou(b) >= iou:
        return True
    return intersection_area(a, b) >= cover * max(min(a.area, b.area), 1e-9)


def confirms_base(proposal: Box, base: Box, iou: float = 0.5, cover: float = 0.7) -> bool:
    """Whether ``proposal`` is the base box's own object at the base box's scale: they overlap, or
    the base box lies inside a looser detection (a torso inside a whole person). A detection lying
    inside a base box more than twice its size is also one object with it (``same_object``), but it
    may be the base box grown over the target and its surroundings (a look-alike crossing it, a
    template taken at another scale)."""
    if proposal.iou(base) >= iou:
        return True
    return intersection_area(proposal, base) >= cover * max(base.area, 1e-9)


def gather_candidates(base_box: Box, grounded: GroundedFrame, redetected: list[tuple[Box, float]] = (),
                      max_proposals: int = 6) -> list[Candidate]:
    """``[base, *proposals, *inner]``: the proposal that is the base box's object (``same_object``, best
    IoU) merges into the base candidate; the other foreground proposals (at most ``max_proposals``, the
    best-scored, one per object) and the template re-detections stand on their own; objects found inside
    a base box more than twice their size come last, marked ``inner_of_base`` (a scale correction)."""
    proposals = [Candidate(box, phrase, score, label=phrase) for box, score, phrase in grounded.foreground]
    proposals += [Candidate(box, REDETECT, score, label=REDETECT) for box, score in redetected]
    base = Candidate(base_box, BASE, 0.0)
    overlapping = [p for p in proposals if same_object(p.box, base_box)]
    # Objects found inside a base box more than twice their size: the evidence of a box grown over
    # the target and its surroundings, weighed by the scale-drift rule only.
    base.inner = [p for p in overlapping if not confirms_base(p.box, base_box)]
    # Only the detector confirms the base box: a re-detection with the same template would agree
    # with a template tracker by construction.
    # (Nor does a detection inside a much larger base box: that is the evidence of a grown box.)
    detected = [p for p in overlapping if p.source != REDETECT and p not in base.inner]
    if detected:
        confirming = max(detected, key=lambda p: (p.box.iou(base_box), p.grounding))
        base.confirming, base.grounding, base.label = confirming, confirming.grounding, confirming.label
    distinct: list[Candidate] = []
    for proposal in sorted(proposals, key=lambda p: -p.grounding):
        if (proposal not in overlapping and all(not same_object(proposal.box, other.box) for other in distinct)
                and len(distinct) < max_proposals):
            distinct.append(proposal)
    for proposal in base.inner:
        proposal.inner_of_base = True
    return [base, *distinct, *base.inner]


def embed_candidates(frame, candidates: list[Candidate], embedder, min_score: float, limit: int) -> None:
    """Attach appearance embeddings (one call for the round) to the base box, to the proposals found
    with at least ``min_score`` (the best ``limit``) and to the objects inside a much larger base box:
    weaker ones could not replace the base box anyway, and a learned embedding costs milliseconds per
    crop."""
    inner = [p for p in candidates[1:] if p.inner_of_base and p.grounding >= min_score][:limit]
    chosen = [candidates[0], *[p for p in candidates[1:] if not p.inner_of_base and p.grounding >= min_score][:limit],
              *inner]
    for candidate, vector in zip(chosen, embedder.embed(frame, [c.box for c in chosen])):
        candidate.embedding = vector
