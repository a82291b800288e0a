"""Step 5: what a grounding round outputs, read off the tracklet path.

The path (``path.TrackletPath``) says which tracklet is the target. When that is the base box's
tracklet, the base box is kept as it is (its size too: a correction must not change the box more than
the evidence supports). When it is another tracklet found this round, that candidate's box is output and
the base tracker is re-initialised on it; the tracklet the base followed stays alive in the path, so
the switch is undone when the evidence turns. When the target's tracklet was not found this round, the
base box is kept and nothing is re-initialised.

``random`` and ``oracle`` selections exist for the ablation the paper reports (the oracle is the upper
bound the candidates allow; it reads the ground truth and is for analysis only); ``base`` never
changes the base box.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from chattracker.fusion.candidates import Candidate
from chattracker.fusion.path import TrackletPath
from chattracker.types import Box

SELECTIONS = ("path", "random", "oracle", "base")


@dataclass
class Decision:
    """What a round chose: ``box`` (None = absent), whether to re-initialise the base tracker on it,
    whether grounding confirmed the base box, the kind of decision and why."""

    box: Box | None
    reinitialize: bool
    confirmed: bool
    kind: str  # kept | confirmed | recovered | unseen | random | oracle | base
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None  # the candidate that is the target this round (None: not seen)
    keep_size: bool = False  # re-initialise with the chosen box's own size (a scale correction)
    state: int | None = None  # the path's tracklet after this round

    @property
    def confirming(self) -> Candidate | None:
        return self.candidates[0].confirming if self.confirmed and self.candidates else None


def is_confirmed(base: Candidate, iou: float, score: float) -> bool:
    """The detector found the base box's own object, credibly and at the base box's place."""
    return base.confirming is not None and base.grounding >= score and base.confirming.box.iou(base.box) >= iou


class Selector:
    """Turns the path's state (or an ablation's pick) into a ``Decision``."""

    def __init__(self, selection: str, path: TrackletPath, switch_iou: float = 0.5, seed: int = 0) -> None:
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        self.selection = selection
        self.path = path
        self.switch_iou = switch_iou
        self.seed = seed
        self._random = random.Random(seed)

    def reset(self, target: int) -> None:
        self.path.reset(target)
        self._random = random.Random(self.seed)

    def decide(self, candidates: list[Candidate], alive: set[int], confirmed: bool,
               truth: Box | None = None) -> Decision:
        """Choose among ``candidates`` (``[base, *others]``, each with its identity and learned ``total``)."""
        base = candidates[0]
        if self.selection == "base":
            return Decision(base.box, False, confirmed, "base", "base", candidates, base, state=base.identity)
        if self.selection in ("random", "oracle"):
            if self.selection == "oracle":
                if truth is None:
                    raise ValueError("the oracle selection needs the ground truth (analysis only)")
                chosen = max(candidates, key=lambda k: k.box.iou(truth))
            else:
                chosen = self._random.choice(candidates)
            switch = chosen is not base and chosen.box.iou(base.box) < self.switch_iou
            return Decision(chosen.box if switch else base.box, switch, confirmed, self.selection, self.selection,
                            candidates, chosen, keep_size=chosen.inner_of_base, state=chosen.identity)
        evidence: dict[int, float] = {}
        for candidate in candidates:
            evidence[candidate.identity] = max(evidence.get(candidate.identity, -np.inf), candidate.total)
        before = self.path.state
        state = self.path.update(evidence, alive)
        found = [c for c in candidates if c.identity == state]
        chosen = max(found, key=lambda c: c.total, default=None)
        if chosen is None:
            return Decision(base.box, False, confirmed, "unseen", "target's tracklet not found; base box kept",
                            candidates, None, state=state)
        if chosen is base or chosen.box.iou(base.box) >= self.switch_iou:
            kind = "confirmed" if confirmed else "kept"
            return Decision(base.box, False, confirmed, kind, kind, candidates, chosen, state=state)
        why = "switched" if before != state else "held"
        return Decision(chosen.box, True, False, "recovered",
                        f"recovered ({why} to tracklet {state}, log-odds {chosen.total:+.2f} against the base "
                        f"box's {base.total:+.2f})", candidates, chosen, keep_size=chosen.inner_of_base, state=state)
