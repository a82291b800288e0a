"""A constant-velocity Kalman filter on the box (centre, size): the motion prior of verification.

OpenCV's ``cv2.KalmanFilter`` does the algebra; noise scales with the box size so that the same
settings suit a 20-pixel bird and a 300-pixel bus.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from chattracker.types import Box


class BoxKalman:
    """State ``cx, cy, w, h`` and their velocities; measurements are boxes."""

    def __init__(self, box: Box, position_noise: float = 0.05, velocity_noise: float = 0.01,
                 measurement_noise: float = 0.05) -> None:
        self.position_noise = position_noise
        self.velocity_noise = velocity_noise
        self.measurement_noise = measurement_noise
        kalman = cv2.KalmanFilter(8, 4)
        transition = np.eye(8, dtype=np.float32)
        transition[:4, 4:] = np.eye(4, dtype=np.float32)
        kalman.transitionMatrix = transition
        kalman.measurementMatrix = np.eye(4, 8, dtype=np.float32)
        self.kalman = kalman
        cx, cy = box.center
        kalman.statePost = np.array([[cx], [cy], [box.w], [box.h], [0], [0], [0], [0]], dtype=np.float32)
        scale = self._scale(box)
        kalman.errorCovPost = np.diag([scale ** 2 * 0.01] * 4 + [scale ** 2 * 0.01] * 4).astype(np.float32)
        self._predicted: Box | None = None

    @staticmethod
    def _scale(box: Box) -> float:
        return max(math.sqrt(max(box.area, 1.0)), 1.0)

    def _set_noise(self, box: Box) -> None:
        scale = self._scale(box)
        q = [(self.position_noise * scale) ** 2] * 4 + [(self.velocity_noise * scale) ** 2] * 4
        self.kalman.processNoiseCov = np.diag(q).astype(np.float32)
        self.kalman.measurementNoiseCov = np.eye(4, dtype=np.float32) * float((self.measurement_noise * scale) ** 2)

    def predict(self) -> Box:
        """Advance one frame and return the predicted box."""
        self._set_noise(self.state)
        state = self.kalman.predict().reshape(-1)
        self._predicted = _box_of(state)
        return self._predicted

    def update(self, box: Box) -> Box:
        """Correct with a measured box; returns the filtered box."""
        cx, cy = box.center
        state = self.kalman.correct(np.array([[cx], [cy], [box.w], [box.h]], dtype=np.float32)).reshape(-1)
        return _box_of(state)

    @property
    def state(self) -> Box:
        return _box_of(self.kalman.statePost.reshape(-1))

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


def _box_of(state: np.ndarray) -> Box:
    cx, cy, w, h = (float(v) for v in state[:4])
    w, h = max(w, 1.0), max(h, 1.0)
    return Box(cx - w / 2.0, cy - h / 2.0, w, h)
