"""Keep the identities of foreground candidates across grounding rounds (``lap.lapjv``).

Rounds can be several frames apart, so the cost is 1 - IoU of the boxes enlarged by ``grow``:
tolerant to motion between rounds, strict about which of two nearby look-alikes is which.
A candidate seen in consecutive rounds is *persistent*; verification only switches to persistent
candidates unless the base tracker is clearly lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np

from chattracker.types import Box


@dataclass
class Track:
    identity: int
    box: Box
    hits: int = 1


class CandidateAssociation:
    def __init__(self, min_iou: float = 0.2, grow: float = 2.0) -> None:
        self.min_iou = min_iou
        self.grow = grow
        self.tracks: list[Track] = []
        self._next = 1

    def reset(self) -> None:
        self.tracks = []

    def update(self, boxes: list[Box]) -> list[Track]:
        """Match this round's boxes to last round's; returns one Track per box (same order)."""
        matched: dict[int, Track] = {}
        if self.tracks and boxes:
            cost = np.ones((len(boxes), len(self.tracks)))
            for i, b in enumerate(boxes):
                for j, t in enumerate(self.tracks):
                    cost[i, j] = 1.0 - b.scaled(self.grow).iou(t.box.scaled(self.grow))
            _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - self.min_iou)
            for i, j in enumerate(rows):
                if j >= 0:
                    previous = self.tracks[j]
                    matched[i] = Track(previous.identity, boxes[i], previous.hits + 1)
        result = []
        for i, b in enumerate(boxes):
            if i not in matched:
                matched[i] = Track(self._next, b)
                self._next += 1
            result.append(matched[i])
        self.tracks = result
        return result
