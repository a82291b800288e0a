"""Foreground verification: score the candidates of a grounding round and decide what to output.

Candidates are the base tracker's box and the foreground proposals. Each gets

    score = w_app * appearance + w_ground * grounding + w_motion * exp(-motion distance)
            - w_background * (IoU with the best-overlapping background proposal)

The verifier is conservative by design: the base tracker is usually right, so a proposal replaces
its box only when the proposal is confident, looks like the remembered target, is persistent across
rounds, scores clearly higher, *and* the base box itself shows a sign of being lost (low confidence,
an implausible jump, a size far from the remembered one, or an appearance that no longer matches).
Otherwise the wrapper could only lose accuracy. ``random`` and ``oracle`` selections exist for the
ablation the paper reports.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from chattracker.fusion.appearance import AppearanceMemory
from chattracker.types import Box, Frame

SELECTIONS = ("verify", "random", "oracle", "base")


@dataclass
class VerificationConfig:
    selection: str = "verify"
    w_appearance: float = 1.0
    w_grounding: float = 0.5
    w_motion: float = 0.5
    w_background: float = 0.5
    switch_margin: float = 0.15  # how much better a proposal must score than the base box
    switch_iou: float = 0.5  # below this IoU with the base box a chosen proposal re-initialises the base
    switch_min_score: float = 0.5  # grounding score a proposal needs to replace the base box
    min_appearance: float = 0.5  # appearance similarity a proposal needs to replace the base box
    low_score: float = 0.5  # base confidence below this is a sign of loss
    motion_gate: float = 1.0  # base motion distance above this is a sign of loss
    size_ratio: float = 1.6  # base area this far from the remembered size is a sign of drift
    drift_rounds: int = 2  # consecutive rounds a proposal must be found inside a much larger base box
    # before the base box is corrected to it
    drift_aspect: float = 1.4  # ... whose aspect ratio is within this factor of the remembered one (a
    # partial detection of the target, cut by occlusion or the frame, has another shape)
    appearance_drop: float = 0.15  # base appearance this much below the proposal's is a sign of loss
    confirm_iou: float = 0.6  # a proposal this close to the base box confirms it
    confirm_score: float = 0.5
    absent_score: float = 0.25  # base confidence below this: clearly lost (switch without persistence);
    # below low_score, with an unfamiliar look or an implausible place and no proposal confirming it,
    # the target is reported absent
    seed: int = 0


@dataclass
class Candidate:
    box: Box
    source: str  # "base" or the phrase that found it
    grounding: float
    appearance: float = 0.0
    motion: float = 0.0
    background: float = 0.0
    total: float = 0.0
    persistent: bool = False
    hits: int = 1  # consecutive grounding rounds this candidate was found in
    identity: int = 0  # its identity across rounds (association), 0 when unknown


@dataclass
class Decision:
    """What verification chose: ``box`` (None = target absent), whether to re-initialise the base
    tracker on it, whether the base box was confirmed by grounding, and why."""

    box: Box | None
    reinitialize: bool
    confirmed: bool
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    confirming: Candidate | None = None  # the proposal that confirmed the base box, if any
    keep_size: bool = False  # re-initialise with the chosen box's own size (a scale correction)


class Verifier:
    def __init__(self, config: VerificationConfig) -> None:
        if config.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {config.selection!r}")
        self.config = config
        self._random = random.Random(config.seed)
        self._drift_streak: dict[int, int] = {}

    def reset(self) -> None:
        self._random = random.Random(self.config.seed)
        self._drift_streak = {}

    def score(self, frame: Frame, candidates: list[Candidate], memory: AppearanceMemory, prior: Box,
              background: list[Box], motion_distance) -> None:
        """Fill in each candidate's component scores and total (in place)."""
        c = self.config
        for candidate in candidates:
            candidate.appearance = memory.score(frame, candidate.box)
            candidate.motion = math.exp(-motion_distance(candidate.box, prior))
            candidate.background = max((candidate.box.iou(b) for b in background), default=0.0)
            candidate.total = (c.w_appearance * candidate.appearance + c.w_grounding * candidate.grounding
                               + c.w_motion * candidate.motion - c.w_background * candidate.background)

    def decide(self, base: Candidate, proposals: list[Candidate], base_score: float | None,
               memory: AppearanceMemory, truth: Box | None = None) -> Decision:
        """Choose among the scored candidates (``truth`` only for the oracle ablation)."""
        c = self.config
        candidates = [base, *proposals]
        confirming = max((p for p in proposals if p.grounding >= c.confirm_score and p.box.iou(base.box) >= c.confirm_iou),
                         key=lambda p: p.box.iou(base.box), default=None)
        confirmed = confirming is not None
        if c.selection == "base":
            return Decision(base.box, False, confirmed, "base", candidates, base, confirming)
        if c.selection in ("random", "oracle"):
            if c.selection == "oracle":
                if truth is None:
                    raise ValueError("the oracle selection needs the ground truth (analysis only)")
                chosen = max(candidates, key=lambda k: k.box.iou(truth))
            else:
                chosen = self._random.choice(candidates)
            switch = chosen is not base and chosen.box.iou(base.box) < c.switch_iou
            return Decision(chosen.box, switch, confirmed, c.selection, candidates, chosen)

        drift = self._scale_drift(base, proposals, memory)
        if drift is not None:
            return Decision(drift.box, True, False, "recovered (scale drift)", candidates, drift, keep_size=True)
        lost_signs = self._lost_signs(base, base_score, memory)
        credible = [p for p in proposals
                    if p.grounding >= c.switch_min_score and p.appearance >= c.min_appearance
                    and p.box.iou(base.box) < c.switch_iou]
        best = max(credible, key=lambda k: k.total, default=None)
        clearly_lost = base_score is not None and base_score < c.absent_score
        if (best is not None and lost_signs and (best.persistent or clearly_lost)
                and best.total >= base.total + c.switch_margin
                and best.appearance >= base.appearance + (0.0 if clearly_lost else c.appearance_drop)):
            return Decision(best.box, True, False, "recovered (" + ", ".join(lost_signs) + ")", candidates, best)
        unsure = base_score is not None and base_score < c.low_score
        if unsure and not confirmed and (base.appearance < c.min_appearance or base.motion < math.exp(-c.motion_gate)):
            return Decision(None, False, False, "absent", candidates, None)
        return Decision(base.box, False, confirmed, "confirmed" if confirmed else "kept", candidates, base,
                        confirming)

    def _scale_drift(self, base: Candidate, proposals: list[Candidate], memory: AppearanceMemory) -> Candidate | None:
        """A confident, familiar-looking proposal found round after round *inside* a base box that is
        much larger: the base box grew around the target (its template was taken at another scale).
        The motion prior cannot see this, since it follows the base's slow drift; the grounder can."""
        c = self.config
        if not memory.boxes:
            return None
        width, height = memory.typical_size()
        aspect = width / max(height, 1e-6)

        def same_shape(box: Box) -> bool:
            ratio = (box.w / max(box.h, 1e-6)) / max(aspect, 1e-6)
            return max(ratio, 1.0 / max(ratio, 1e-6)) <= c.drift_aspect

        def centre_inside(inner: Box, outer: Box) -> bool:
            x, y = inner.center
            return outer.x <= x <= outer.x + outer.w and outer.y <= y <= outer.y + outer.h

        inside = [p for p in proposals
                  if p.grounding >= c.switch_min_score and p.appearance >= c.min_appearance
                  and base.box.area >= c.size_ratio * p.box.area and centre_inside(p.box, base.box)
                  and same_shape(p.box)]
        # The same object must be found inside the oversized base box round after round: one such
        # round is as likely a partial detection (an occluded target) as a drifting box.
        self._drift_streak = {p.identity: self._drift_streak.get(p.identity, 0) + 1 for p in inside}
        ready = [p for p in inside if self._drift_streak[p.identity] >= c.drift_rounds]
        return max(ready, key=lambda p: p.total, default=None)

    def _lost_signs(self, base: Candidate, base_score: float | None, memory: AppearanceMemory) -> list[str]:
        c = self.config
        signs = []
        if base_score is not None and base_score < c.low_score:
            signs.append("low score")
        if base.motion < math.exp(-c.motion_gate):
            signs.append("implausible motion")
        if memory.boxes:
            w, h = memory.typical_size()
            ratio = base.box.area / max(w * h, 1e-6)
            aspect = (base.box.w / max(base.box.h, 1e-6)) / max(w / max(h, 1e-6), 1e-6)
            if max(ratio, 1 / max(ratio, 1e-6)) > c.size_ratio or max(aspect, 1 / max(aspect, 1e-6)) > c.size_ratio:
                signs.append("size drift")
        if base.appearance < c.min_appearance:
            signs.append("appearance")
        return signs

