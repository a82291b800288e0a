"""Step 2: an identity for every candidate across grounding rounds (``lap.lapjv``), and their roles.

The dangerous distractor is an object of the target's class that the base tracker slides onto at
full confidence (DESIGN.md section 7). Keeping an identity for the target *and* for every look-alike
makes that slide visible: the base box turns up on an identity that was a distractor. Rounds are
several frames apart, so the cost mixes the IoU of enlarged boxes (tolerant to motion) with the
appearance embeddings (which of two crossing look-alikes is which). The idea follows KeepTrack
(Mayer et al., ICCV 2021), with a fixed cost instead of a learned association network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from chattracker.fusion.candidates import BASE, Candidate, same_object
from chattracker.types import Box

TARGET, DISTRACTOR, NEW = "target", "distractor", "new"


@dataclass
class Identity:
    identity: int
    box: Box
    embedding: np.ndarray | None = field(default=None, repr=False)
    hits: int = 1
    last_round: int = 0
    role: str = NEW
    first_round: int = 0  # the tracklet's history: when it was first seen,
    rounds_seen: int = 1  # ... in how many rounds it was found,
    rounds_target: int = 0  # ... and in how many of them it was the chosen target


class IdentityTracker:
    """Identities of the objects seen in the last rounds; ``target`` is the one being tracked."""

    def __init__(self, min_iou: float = 0.1, grow: float = 2.0, appearance_weight: float = 1.0,
                 max_gap: int = 3) -> None:
        self.min_iou = min_iou
        self.grow = grow
        self.appearance_weight = appearance_weight
        self.max_gap = max_gap  # rounds an unseen identity is kept before it is forgotten
        self.identities: list[Identity] = []
        self.target: int | None = None
        self.base_identity: int | None = None  # the tracklet the base tracker's box was on last round
        self._next = 1
        self._round = 0

    def reset(self, box: Box | None = None, embedding: np.ndarray | None = None) -> None:
        """Forget everything; with ``box``, start with the target's identity there (the first frame)."""
        self.identities, self.target, self._round, self._next = [], None, 0, 1  # a reused tracker numbers as a new one
        self.base_identity = None
        if box is not None:
            self.base_identity = self._next
            self.identities.append(Identity(self._next, box, embedding, 1, 0, TARGET, rounds_target=1))
            self.target = self._next
            self._next += 1

    def follow(self, identity: int | None) -> None:
        """The base tracker was re-initialised on ``identity``'s object: its box continues that tracklet."""
        self.base_identity = identity

    def _cost(self, candidate: Candidate, identity: Identity) -> float:
        overlap = candidate.box.scaled(self.grow).iou(identity.box.scaled(self.grow))
        if candidate.source == BASE and identity.identity == self.base_identity:
            # The base tracker's own track is continuous between rounds (a fast target moves far in ten
            # frames): its box continues its tracklet unless the looks say it is another object now.
            overlap = max(overlap, 1.0 - self.min_iou)
        if overlap < self.min_iou:
            return 2.0 + self.appearance_weight  # beyond the cost limit: never matched
        appearance = 0.0
        if candidate.embedding is not None and identity.embedding is not None:
            appearance = 1.0 - max(float(candidate.embedding @ identity.embedding), 0.0)
        return (1.0 - overlap) + self.appearance_weight * appearance

    def update(self, candidates: list[Candidate]) -> None:
        """Match this round's candidates to the known identities; fills ``identity``, ``hits`` and
        ``role`` of each candidate (in place). Unmatched candidates get new identities."""
        self._round += 1
        live = [i for i in self.identities if self._alive(i)]
        matched: dict[int, Identity] = {}
        if live and candidates:
            cost = np.array([[self._cost(c, i) for i in live] for c in candidates])
            # Overlapping boxes whose looks differ (cosine below about 0.4) are not one object.
            limit = 1.0 - self.min_iou + 0.6 * self.appearance_weight
            _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
            matched = {k: live[j] for k, j in enumerate(rows) if j >= 0}
        kept = []
        for k, candidate in enumerate(candidates):
            previous = matched.get(k)
            if previous is None:
                candidate.identity, candidate.hits, candidate.role = self._next, 1, NEW
                self._next += 1
                kept.append(Identity(candidate.identity, candidate.box, candidate.embedding, 1, self._round,
                                     first_round=self._round))
                continue
            candidate.identity, candidate.role = previous.identity, previous.role
            candidate.hits = previous.hits + 1 if self._round - previous.last_round == 1 else 1
            embedding = candidate.embedding
            if embedding is not None and previous.embedding is not None:
                # A slow average: one odd crop (an occlusion) does not rewrite who the object is.
                mixed = 0.7 * previous.embedding + 0.3 * embedding
                embedding = mixed / max(float(np.linalg.norm(mixed)), 1e-9)
            kept.append(Identity(previous.identity, candidate.box, embedding, candidate.hits, self._round, previous.role,
                                 previous.first_round, previous.rounds_seen + 1, previous.rounds_target))
        if candidates and candidates[0].source == BASE:
            self.base_identity = candidates[0].identity
        seen = {i.identity for i in kept}
        kept.extend(i for i in live if i.identity not in seen)
        self.identities = kept

    def assign(self, target: Candidate | None, candidates: list[Candidate], colour_miss: float = 0.2,
               colour_fit: float = 0.6, revoke_margin: float = float("inf")) -> None:
        """After the decision: ``target`` is the target's identity (None: not seen this round). The
        other candidates of this round that look less like the target than it does are distractors;
        one that looks more like it, or has the description's colour that ``target`` lacks, stays
        unresolved, so a wrong base box cannot brand the real target a distractor. A distractor that
        now looks ``revoke_margin`` more like the target than ``target`` does loses its mark: the mark
        was made from one glimpse (a target half out from behind an occluder looks like little), and
        a base box left behind on a patch of background keeps it from ever being taken back."""
        if target is not None and target.identity == 0 and candidates:
            # An object found inside a grown base box (a scale correction) has no identity of its own: it
            # is the base's track, resized, so the base's identity stays the target's and takes its box.
            own = next((i for i in self.identities if i.identity == candidates[0].identity), None)
            if own is not None:
                own.box = target.box
                own.embedding = target.embedding if target.embedding is not None else own.embedding
            target.identity = candidates[0].identity
        if target is not None:
            self.target = target.identity
            chosen = self.target_identity()
            if chosen is not None and chosen.last_round == self._round:
                chosen.rounds_target += 1
        roles: dict[int, str] = {}
        for candidate in candidates:
            if candidate.identity == self.target:
                roles[candidate.identity] = TARGET
            elif target is not None and same_object(candidate.box, target.box):
                continue  # another find of the target's own object (the re-detector's, beside the detector's)
            elif (target is not None and candidate.embedding is not None and candidate.appearance < target.appearance
                  and not (candidate.colour is not None and target.colour is not None
                           and candidate.colour >= colour_fit and target.colour < colour_miss)):
                roles[candidate.identity] = DISTRACTOR
            elif (target is not None and candidate.role == DISTRACTOR and candidate.embedding is not None
                  and candidate.appearance >= target.appearance + revoke_margin):
                roles[candidate.identity] = NEW
        for identity in self.identities:
            if identity.last_round == self._round and identity.identity in roles:
                identity.role = roles[identity.identity]

    def _alive(self, identity: Identity) -> bool:
        # The target's tracklet is kept however long it is unseen (out of view, occluded): forgetting it
        # would make a switch away from it impossible to undo when it comes back.
        return identity.identity == self.target or self._round - identity.last_round <= self.max_gap

    def alive(self) -> set[int]:
        """The tracklets still remembered (found within the last ``max_gap`` rounds, and the target's)."""
        return {i.identity for i in self.identities if self._alive(i)}

    def histories(self) -> dict[int, tuple[int, float]]:
        """Tracklet identity -> (age in rounds, share of the rounds it was found as the chosen target)."""
        return {i.identity: (self._round - i.first_round, i.rounds_target / max(i.rounds_seen, 1))
                for i in self.identities}

    def find(self, identity: int | None) -> Identity | None:
        return next((i for i in self.identities if i.identity == identity), None)

    def distractor_embeddings(self) -> list[tuple[int, np.ndarray]]:
        """``(identity, embedding)`` of the known distractors."""
        return [(i.identity, i.embedding) for i in self.identities if i.role == DISTRACTOR and i.embedding is not None]

    def target_identity(self) -> Identity | None:
        return next((i for i in self.identities if i.identity == self.target), None)
