"""When to run the grounder: every K frames, and early when the base tracker looks unsure.

Grounding is the expensive step (tens of milliseconds on a CPU), so it runs sparsely; the cheap
signals checked on every frame (the base tracker's own confidence, a motion jump against the
Kalman prediction, a size jump) pull the next round forward, and so does the last round's finding
that the target seems lost at full confidence (the base box without the described colour, round
after round: a re-emerging target is then taken back a few frames after it shows, not at the next
periodic round; the wrapper limits that to two periods); a cooldown keeps a long stretch of doubt from
turning into grounding on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GroundingSchedule:
    """``every``: periodic interval in frames (0: only on triggers); ``cooldown``: the smallest gap
    between two rounds pulled forward by a trigger."""

    every: int = 10
    cooldown: int = 3
    low_score: float = 0.5
    motion_gate: float = 1.0
    _last: int = 0

    def reset(self, frame_index: int = 0) -> None:
        self._last = frame_index

    def due(self, frame_index: int, score: float | None, motion_distance: float, lost: bool = False) -> str | None:
        """The reason to ground on this frame (``periodic``, ``low-score``, ``motion``, ``lost``), or None."""
        gap = frame_index - self._last
        reason = None
        if self.every > 0 and gap >= self.every:
            reason = "periodic"
        elif gap >= self.cooldown:
            if score is not None and score < self.low_score:
                reason = "low-score"
            elif motion_distance > self.motion_gate:
                reason = "motion"
            elif lost:
                reason = "lost"
        if reason is not None:
            self._last = frame_index
        return reason
