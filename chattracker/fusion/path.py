"""Step 4: which tracklet is the target, as the best path of an online dynamic programme over rounds.

Each round every live tracklet gets the learned log-odds that it is the target (a fixed ``unseen``
value when it was not found this round). A path may stay on its tracklet or jump to another at
``switch_cost``; the value of a tracklet is the best path ending there, with older evidence weighed
down by ``decay`` so the programme can change its mind after a long run. The output follows the best
path's current state: a switch needs evidence that outweighs its cost, and a wrong switch is undone
as soon as the evidence turns, since the old tracklet's value is still there. This is Siam R-CNN's
tracklet dynamic programme (Voigtlaender et al., CVPR 2020) run online as a Viterbi recursion.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrackletPath:
    switch_cost: float = 2.0
    decay: float = 0.8
    unseen: float = -1.0
    start: float = 4.0  # the first frame's box is the target: its tracklet starts this far ahead
    values: dict[int, float] = field(default_factory=dict)
    state: int | None = None

    def reset(self, target: int) -> None:
        self.values = {target: self.start}
        self.state = target

    def update(self, evidence: dict[int, float], alive: set[int]) -> int | None:
        """Advance one round: ``evidence`` maps each tracklet found this round to its log-odds; ``alive``
        holds the tracklets still remembered (found or not). Returns the new state."""
        previous = {k: self.decay * v for k, v in self.values.items() if k in alive or k in evidence}
        best_before = max(previous.values(), default=0.0)
        values = {}
        for tracklet in alive | set(evidence):
            stay = previous.get(tracklet)
            jump = best_before - self.switch_cost
            come = jump if stay is None else max(stay, jump)
            values[tracklet] = come + evidence.get(tracklet, self.unseen)
        self.values = values
        if values:
            best = max(values.values())
            # Ties keep the current state: equal evidence never flips the path.
            if self.state in values and values[self.state] >= best:
                return self.state
            self.state = max(values, key=lambda k: (values[k], -k))
        return self.state
