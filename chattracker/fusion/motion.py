"""A constant-velocity Kalman filter on the box (centre, size): the motion prior of verification.

Noise scales with the box size so that the same settings suit a 20-pixel bird and a 300-pixel bus.
The filter runs every frame, so it is written for its structure rather than as generic 8x8 algebra:
with the four coordinates (cx, cy, w, h) moving independently under the same noise, the 8x8
covariance stays ``[[a I, b I], [b I, c I]]`` and one 2x2 covariance, shared by all four, carries
it. The result is the 8x8 filter's (``tests/test_fusion.py`` checks it against ``cv2.KalmanFilter``
step for step) without rebuilding OpenCV matrices every frame: over the 15 development sequences the
wrapper's overhead went 13.47 s -> 13.18 s, back to back (``bench/fusion.py --no-oracle``).
"""

from __future__ import annotations

import math

from chattracker.types import Box


class BoxKalman:
    """State ``cx, cy, w, h`` and their velocities; measurements are boxes."""

    def __init__(self, box: Box, position_noise: float = 0.05, velocity_noise: float = 0.01,
                 measurement_noise: float = 0.05) -> None:
        self.position_noise = position_noise
        self.velocity_noise = velocity_noise
        self.measurement_noise = measurement_noise
        cx, cy = box.center
        self.position = [cx, cy, box.w, box.h]
        self.velocity = [0.0, 0.0, 0.0, 0.0]
        initial = self._scale(box) ** 2 * 0.01
        # The shared covariance of (coordinate, its velocity): [[a, b], [b, c]].
        self.a, self.b, self.c = initial, 0.0, initial
        self._measurement_variance = (measurement_noise * self._scale(box)) ** 2
        self._predicted: Box | None = None

    @staticmethod
    def _scale(box: Box) -> float:
        return max(math.sqrt(max(box.area, 1.0)), 1.0)

    def predict(self) -> Box:
        """Advance one frame and return the predicted box (the noise is scaled by the current box)."""
        scale = self._scale(self.state)
        q_position, q_velocity = (self.position_noise * scale) ** 2, (self.velocity_noise * scale) ** 2
        self._measurement_variance = (self.measurement_noise * scale) ** 2
        self.position = [p + v for p, v in zip(self.position, self.velocity)]
        a, b, c = self.a, self.b, self.c
        self.a, self.b, self.c = a + 2.0 * b + c + q_position, b + c, c + q_velocity
        self._predicted = self.state
        return self._predicted

    def update(self, box: Box) -> Box:
        """Correct with a measured box; returns the filtered box."""
        cx, cy = box.center
        a, b, c = self.a, self.b, self.c
        innovation_variance = a + self._measurement_variance
        gain_position, gain_velocity = a / innovation_variance, b / innovation_variance
        residuals = [z - p for z, p in zip((cx, cy, box.w, box.h), self.position)]
        self.position = [p + gain_position * r for p, r in zip(self.position, residuals)]
        self.velocity = [v + gain_velocity * r for v, r in zip(self.velocity, residuals)]
        self.a, self.b, self.c = a - gain_position * a, b - gain_position * b, c - gain_velocity * b
        return self.state

    @property
    def state(self) -> Box:
        cx, cy, w, h = self.position
        w, h = max(w, 1.0), max(h, 1.0)
        return Box(cx - w / 2.0, cy - h / 2.0, w, h)

    def distance(self, box: Box, reference: Box | None = None) -> float:
        """How far ``box`` is from the prediction, in units of the predicted box's size.

        Centre offset divided by the geometric-mean side, plus the log of the area ratio: 0 for a
        perfect match, about 1 for a jump of one target size or a size change of e^1.
        """
        reference = reference or self._predicted or self.state
        scale = self._scale(reference)
        (ax, ay), (bx, by) = box.center, reference.center
        offset = math.hypot(ax - bx, ay - by) / scale
        size = abs(math.log(max(box.area, 1e-6) / max(reference.area, 1e-6)))
        return offset + size
