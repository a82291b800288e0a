"""The server side of the TraX protocol (through ``vot-trax``): the VOT toolkit drives any of our trackers.

The client sends frames (file paths, raw memory or encoded buffers) and, on initialisation, the target
region (rectangle or polygon; a polygon becomes its axis-aligned bounds, as the ``vot`` dataset loader
does). Each reply is a rectangle with the tracker's confidence; a target reported absent is the empty
rectangle (0, 0, 0, 0) with confidence 0, how VOT long-term analyses read absence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any, Iterator

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


def connect_client(address: str, timeout: float) -> socket.socket:
    """A connection to the client listening at ``$TRAX_SOCKET`` (``port`` or ``host:port``), tried until
    ``timeout`` seconds have passed: libtrax itself retries forever, printing a line a second."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"TRAX_SOCKET={address!r} is not a port or host:port")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((host or "127.0.0.1", int(port)), timeout=max(0.1, timeout))
        except OSError as error:
            if time.monotonic() >= deadline:
                raise InputError(f"no TraX client at TRAX_SOCKET={address} after {timeout:g} s "
                                 f"({(error.strerror or str(error)).lower()})") from None
            time.sleep(0.2)


@contextlib.contextmanager
def client_stream(connect_timeout: float) -> Iterator[None]:
    """Where libtrax talks: standard input/output, or a socket we connect ourselves (bounded in time) and hand
    over as ``TRAX_IN``/``TRAX_OUT``, which libtrax reads before ``TRAX_SOCKET``."""
    address = os.environ.get("TRAX_SOCKET")
    if not address:
        yield
        return
    connection = connect_client(address, connect_timeout)
    connection.settimeout(None)
    saved = {key: os.environ.get(key) for key in ("TRAX_SOCKET", "TRAX_IN", "TRAX_OUT")}
    os.environ.pop("TRAX_SOCKET")
    os.environ["TRAX_IN"] = os.environ["TRAX_OUT"] = str(connection.fileno())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        connection.close()


def serve(tracker: Tracker, name: str = "ChatTracker", log: str | bool = False, connect_timeout: float = 30.0) -> int:
    """Answer TraX requests with ``tracker`` until the client quits; returns the number of sequences."""
    with client_stream(connect_timeout):
        return _serve(tracker, name, log)


def _serve(tracker: Tracker, name: str, log: str | bool) -> int:
    from trax import Image, Region, Server, TraxException, TraxStatus
    from trax.region import Rectangle

    try:
        server = Server([Region.RECTANGLE, Region.POLYGON], [Image.PATH, Image.MEMORY, Image.BUFFER],
                        tracker_name=name, tracker_family="chattracker", log=log)
    except TraxException as error:
        raise InputError(_lost_client(0, error)) from None
    sequences = 0
    logger.info("TraX: serving %s", name)
    try:
        while True:
            request = server.wait()
            if request.type == TraxStatus.QUIT:
                break
            reply, confidence = _answer(tracker, request, TraxStatus.INITIALIZE)
            if request.type == TraxStatus.INITIALIZE:
                sequences += 1
                logger.info("TraX: sequence %d started at %s", sequences, reply)
            rectangle = Rectangle.create(*(reply.to_list() if reply is not None else (0.0, 0.0, 0.0, 0.0)))
            server.status([(rectangle, {"confidence": f"{confidence:.6f}"})])
    except BaseException as error:
        # Tell the client why before leaving (the toolkit shows the reason); the CLI prints one line.
        with contextlib.suppress(Exception):  # a client already gone must not hide the error itself
            server.quit(reason=f"{type(error).__name__}: {error}"[:500])
        if isinstance(error, TraxException):  # the client went away or sent something that is not TraX
            raise InputError(_lost_client(sequences, error)) from None
        raise
    server.quit()
    logger.info("TraX: the client quit after %d sequence(s)", sequences)
    return sequences


def _lost_client(sequences: int, error: Exception) -> str:
    if sequences:
        return f"the TraX client went away or broke the protocol after {sequences} sequence(s) ({error})"
    where = "$TRAX_SOCKET" if os.environ.get("TRAX_IN") else "standard input"
    return (f"no TraX client on {where}: the input ended or is not TraX ({error}); `chattracker trax` is started "
            "by the VOT toolkit (trackers.ini: protocol = trax)")


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
