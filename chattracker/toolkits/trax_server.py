"""The server side of the TraX protocol (through ``vot-trax``): the VOT toolkit drives any of our trackers.

The client sends frames (file paths, raw memory or encoded buffers) and, on initialisation, the target
region (rectangle or polygon; a polygon becomes its axis-aligned bounds, as the ``vot`` dataset loader
does). Each reply is a rectangle with the tracker's confidence; a target reported absent is the empty
rectangle (0, 0, 0, 0) with confidence 0, how VOT long-term analyses read absence.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import cv2
import numpy as np

from chattracker.errors import InputError
from chattracker.types import Box, Frame, Tracker
from chattracker.video import read_image

logger = logging.getLogger(__name__)

TEXT_PROPERTY = "text"  # an optional per-object property holding the target's description


def region_to_box(region: Any) -> Box:
    """A TraX rectangle or polygon as an ``x, y, w, h`` box."""
    from trax import Region

    if region.type == Region.RECTANGLE:
        return Box(*(float(v) for v in region.bounds()))
    if region.type == Region.POLYGON:
        points = np.asarray([region.get(i) for i in range(region.size())], dtype=np.float64)
        x1, y1 = points.min(axis=0)
        x2, y2 = points.max(axis=0)
        return Box.from_xyxy(x1, y1, x2, y2)
    raise InputError(f"TraX region of type {region.type!r} is not supported (rectangle or polygon only)")


def image_to_frame(image: Any) -> Frame:
    """A TraX image (path, memory or buffer) as an RGB uint8 frame."""
    from trax import Image

    kind = image.type()
    if kind == Image.PATH:
        return read_image(image.path())
    if kind == Image.MEMORY:
        array = image.array()
        if array.dtype != np.uint8:
            array = (array / 256).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array)
    if kind == Image.BUFFER:
        # OpenCV logs its own complaint about a broken buffer; the error below says it once.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            decoded = cv2.imdecode(np.frombuffer(image.buffer(), dtype=np.uint8), cv2.IMREAD_COLOR)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if decoded is None:
            raise InputError("TraX image buffer is not a decodable JPEG/PNG")
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    raise InputError(f"TraX image of type {kind!r} is not supported")


def serve(tracker: Tracker, name: str = "ChatTracker", log: str | bool = False) -> int:
    """Answer TraX requests with ``tracker`` until the client quits; returns the number of sequences."""
    from trax import Image, Region, Server, TraxStatus
    from trax.region import Rectangle

    server = Server([Region.RECTANGLE, Region.POLYGON], [Image.PATH, Image.MEMORY, Image.BUFFER],
                    tracker_name=name, tracker_family="chattracker", log=log)
    sequences = 0
    try:
        while True:
            request = server.wait()
            if request.type == TraxStatus.QUIT:
                break
            reply, confidence = _answer(tracker, request, TraxStatus.INITIALIZE)
            sequences += request.type == TraxStatus.INITIALIZE
            rectangle = Rectangle.create(*(reply.to_list() if reply is not None else (0.0, 0.0, 0.0, 0.0)))
            server.status([(rectangle, {"confidence": f"{confidence:.6f}"})])
    except BaseException as error:
        # Tell the client why before leaving (the toolkit shows the reason); the CLI prints one line.
        with contextlib.suppress(Exception):  # a client already gone must not hide the error itself
            server.quit(reason=f"{type(error).__name__}: {error}"[:500])
        raise
    server.quit()
    return sequences


def _answer(tracker: Tracker, request: Any, initialize: Any) -> tuple[Box | None, float]:
    """The box (None: target absent) and confidence for one INITIALIZE or FRAME request."""
    frame = image_to_frame(request.image["color"])
    if request.type == initialize:
        if len(request.objects) != 1:
            raise InputError(f"single-target tracker: got {len(request.objects)} objects to initialise")
        region, properties = request.objects[0]
        box = region_to_box(region)
        tracker.initialize(frame, box, properties.get(TEXT_PROPERTY) or None)
        return box, 1.0
    result = tracker.track(frame)
    if result.box is None or not result.box.is_valid():
        return None, 0.0
    return result.box, 1.0 if result.score is None else float(result.score)
