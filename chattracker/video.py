"""Frame sources (video file or image folder, read lazily; a webcam or a stream URL, read live) and the
annotated-video writer.

Frames leave this module as RGB uint8 arrays; OpenCV's BGR stays inside.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from chattracker.errors import InputError
from chattracker.results import make_shareable
from chattracker.types import Box, Frame

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def natural_key(name: str) -> list[object]:
    """Sort key that puts ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files of a folder (image extensions only), in natural order."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: natural_key(p.name))


JPEG_END = b"\xff\xd9"


def read_image(path: str | os.PathLike[str]) -> Frame:
    """Read one image as RGB uint8; unreadable files raise ``InputError`` naming the file.

    A JPEG cut short still decodes (its lower part grey), so it is used with a warning."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image")
    if not path.exists():
        raise InputError(f"image {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # imread decodes a cut-short JPEG, imdecode refuses it
    if image is None:
        raise InputError(f"cannot read image {path}")
    if _cut_short_jpeg(path):
        logger.warning("image %s is cut short (no JPEG end marker): its missing part decodes as grey", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _cut_short_jpeg(path: Path) -> bool:
    """A JPEG whose end marker is missing; bytes after the marker are common (metadata), hence a look at the tail."""
    try:
        with path.open("rb") as handle:
            if handle.read(2) != b"\xff\xd8":
                return False
            handle.seek(max(0, path.stat().st_size - 4096))
            return JPEG_END not in handle.read()
    except OSError:
        return False


class FrameSource:
    """Iterates over the frames of a video file or an image folder without loading them all."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path} does not exist")
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self.files = list_images(self.path)
            if not self.files:
                raise InputError(f"{self.path} has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            first = read_image(self.files[0])
            self.fps = 30.0
            self.num_frames: int | None = len(self.files)
        else:
            capture = cv2.VideoCapture(str(self.path))
            ok, first_bgr = capture.read() if capture.isOpened() else (False, None)
            if not ok or first_bgr is None:
                capture.release()
                raise InputError(f"cannot read video {self.path} (not a video file, or corrupt)")
            first = cv2.cvtColor(first_bgr, cv2.COLOR_BGR2RGB)
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.num_frames = count if count > 0 else None
            capture.release()
        self.height, self.width = first.shape[:2]

    def __iter__(self) -> Iterator[Frame]:
        if self.is_folder:
            for index, file in enumerate(self.files):
                frame = read_image(file)
                if frame.shape[:2] != (self.height, self.width):
                    # boxes would continue in the other size's pixels and the video writer drops such frames
                    raise InputError(f"frame {index + 1} ({file.name}) is {frame.shape[1]}x{frame.shape[0]} but the "
                                     f"first frame is {self.width}x{self.height}: all frames of {self.path} must "
                                     "have one size")
                yield frame
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                index += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if index == 0:
                raise InputError(f"cannot read video {self.path}")
            if self.num_frames is not None and index < self.num_frames:
                logger.warning("video %s ended after %d of the %d frames its header announces (truncated?)",
                               self.path, index, self.num_frames)
        finally:
            capture.release()


# Schemes OpenCV's FFmpeg backend reads as a network stream; anything else with "://" is refused by name
# rather than looked up as a file (``rtsp://h/x`` is no path, and Path() would fold it to ``rtsp:/h/x``).
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
DEFAULT_STALL_TIMEOUT = 10.0


class StreamError(InputError):
    """A live source that cannot be opened, stalls or disconnects."""


def is_camera_index(source: str) -> bool:
    return source.isdigit() and not Path(source).exists()


def stream_scheme(source: str) -> str | None:
    """The URL scheme of ``source`` when it names a stream (``http``...), None for a path; unknown schemes
    are an error naming the ones accepted."""
    if "://" not in source:
        return None
    scheme = source.split("://", 1)[0].lower()
    if scheme not in STREAM_SCHEMES:
        raise InputError(f"{redact(source)}: {scheme}:// sources are not supported; give a video file, a folder of "
                         f"frames, a webcam index (0) or a stream URL ({', '.join(s + '://' for s in STREAM_SCHEMES)})")
    return scheme


def redact(url: str) -> str:
    """The URL without its password (``rtsp://user:***@host/...``), for messages and records."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_live(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is read as a live source (webcam index or stream URL) rather than a path."""
    text = os.fspath(source)
    return is_camera_index(text) or stream_scheme(text) is not None


def open_source(source: str | os.PathLike[str], stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> "FrameSource | LiveSource":
    """A ``LiveSource`` for a webcam index or a stream URL, a ``FrameSource`` for a file or folder."""
    if is_live(source):
        return LiveSource(os.fspath(source), stall_timeout)
    return FrameSource(source)


class LiveSource:
    """Frames of a webcam or network stream, read by a thread that keeps only the newest one.

    A live source does not wait for the tracker: a frame that arrives before the previous one was taken is
    dropped (``dropped``), so tracking stays current and memory stays bounded. A stream that announces a
    frame count (a video file served over HTTP) is read whole instead, a few frames ahead. No new frame
    within ``stall_timeout`` seconds, or the connection closing, ends the iteration with a ``StreamError``;
    ``stop()`` ends it quietly (Ctrl-C)."""

    AHEAD = 8  # frames read ahead of the tracker when nothing may be dropped

    def __init__(self, source: str, stall_timeout: float = DEFAULT_STALL_TIMEOUT) -> None:
        if not (stall_timeout > 0 and np.isfinite(stall_timeout)):
            raise InputError(f"--stall-timeout must be a positive number of seconds, got {stall_timeout}")
        self.source = source
        self.name = f"camera {source}" if is_camera_index(source) else f"stream {redact(source)}"
        self.stall_timeout = float(stall_timeout)
        self.path = None
        self.is_folder = False
        self.received = 0
        self.dropped = 0
        self.fps = 30.0
        self.num_frames: int | None = None
        self.live = True
        self._buffer: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stopping = False  # a plain flag: stop() runs in a signal handler
        self._ended: str | None = None
        self._last_arrival = time.monotonic()
        self._thread = threading.Thread(target=self._read, name=f"chattracker-live-{source[:40]}", daemon=True)
        self._thread.start()
        try:
            first = self._next_frame(first=True)
        except StreamError:
            self.close()
            raise
        if first is None:
            raise StreamError(f"{self.name} was stopped before its first frame")
        self._first: Frame | None = first
        self.height, self.width = first.shape[:2]

    def _open(self) -> cv2.VideoCapture:
        milliseconds = int(self.stall_timeout * 1000)
        # OpenCV's and FFmpeg's own warnings ("can't open camera by index", "Stream ends prematurely")
        # would add lines to the one error line
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        if is_camera_index(self.source):
            return cv2.VideoCapture(int(self.source))
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        return cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds,
                                                             cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds])

    def _read(self) -> None:
        capture, why = None, "ended"
        try:
            capture = self._open()
            if not capture.isOpened():
                why = "cannot be opened"
                return
            fps = capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps <= 1000 else 30.0
            count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            if not is_camera_index(self.source) and np.isfinite(count) and count > 0:
                self.num_frames, self.live = int(count), False
            while not self._stopping:
                ok, bgr = capture.read()
                if not ok or bgr is None:
                    why = "ended" if not self.live else "closed the connection"
                    return
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                with self._cond:
                    if self.live:
                        self.dropped += len(self._buffer)
                        self._buffer.clear()
                    else:
                        while len(self._buffer) >= self.AHEAD and not self._stopping:
                            self._cond.wait(0.1)
                    self._buffer.append(frame)
                    self.received += 1
                    self._last_arrival = time.monotonic()
                    self._cond.notify_all()
        except Exception as error:  # an OpenCV fault in the thread must still end the iteration with a line
            why = f"failed: {error}"
        finally:
            # released before the end is announced: the process may exit right after, and OpenCV aborts
            # when its capture is torn down under a running thread
            if capture is not None:
                capture.release()
            self._finish(why)

    def _finish(self, why: str) -> None:
        with self._cond:
            self._ended = why
            self._cond.notify_all()

    def _next_frame(self, first: bool = False) -> Frame | None:
        """The newest frame (live) or the next one; None once stopped; ``StreamError`` on stall or end."""
        with self._cond:
            while not self._buffer:
                if self._stopping:
                    return None
                if self._ended is not None:
                    if self._ended == "ended" and not first:
                        return None
                    if first and self._ended in ("ended", "closed the connection"):
                        raise StreamError(f"{self.name} opened but gave no frame (not a video, or a server that "
                                          "cannot seek within a file)")
                    after = "" if first else f" after {self.received} frames received"
                    raise StreamError(f"{self.name} {self._ended}{after}")
                waited = time.monotonic() - self._last_arrival
                if waited >= self.stall_timeout:
                    what = "sent no frame" if first else "stopped sending frames"
                    raise StreamError(f"{self.name} {what} for {self.stall_timeout:g} s"
                                      + ("" if first else f" (after {self.received} frames received)")
                                      + " (--stall-timeout)")
                self._cond.wait(min(0.2, self.stall_timeout - waited))  # short: a stop() is seen promptly
            frame = self._buffer.popleft()
            self._cond.notify_all()
            return frame

    def __iter__(self) -> Iterator[Frame]:
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield first
            while True:
                frame = self._next_frame()
                if frame is None:
                    return
                yield frame
        finally:
            self.close()

    def stop(self) -> None:
        """End the iteration after the current frame (safe from a signal handler: sets a flag only)."""
        self._stopping = True

    def close(self) -> None:
        """Stop reading and wait for the reader to let go of the capture (a read blocked in the network
        gives up by itself after the stall timeout, FFmpeg's read timeout)."""
        self._stopping = True
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=self.stall_timeout + 2)

    def stats(self) -> dict[str, object]:
        return {"source": self.name, "received": self.received, "dropped": self.dropped, "source_fps": self.fps,
                "live": self.live}


def check_init_box(box: Box, width: int, height: int) -> Box:
    """Validate the initial box against the frame: errors for empty or outside, clip when partly out."""
    if not np.isfinite(box.to_list()).all():
        raise InputError(f"initial box {box.to_list()} has non-finite values")
    if box.w <= 0 or box.h <= 0:
        raise InputError(f"initial box {box.to_list()} has zero or negative size; give x,y,w,h with w,h > 0")
    x1, y1, x2, y2 = box.to_xyxy()
    inside = x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height
    clipped = box if inside else box.clip(width, height)
    if clipped.w <= 0 or clipped.h <= 0:
        raise InputError(f"initial box {box.to_list()} is outside the {width}x{height} frame")
    if clipped.w < 1 or clipped.h < 1:
        raise InputError(f"initial box {box.to_list()} is smaller than one pixel"
                         + ("" if inside else f" once clipped to the {width}x{height} frame ({clipped.to_list()})"))
    if not inside:
        logger.warning("initial box %s extends past the %dx%d frame; clipped to %s", box.to_list(), width, height, clipped.to_list())
    return clipped


@dataclass
class Overlay:
    """Extra boxes to draw: (box, label, RGB colour)."""

    box: Box
    label: str
    color: tuple[int, int, int]


DISK_CHECK_EVERY = 8  # frames between two looks at the free space (a statvfs call costs microseconds)


class AnnotatedVideoWriter:
    """Writes an MP4 with the box, score, frame number and optional text; atomic on close."""

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix or ".mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            # the path is a staging folder's: the size is what the user can act on
            raise InputError(f"OpenCV's MP4 writer cannot encode {width}x{height} frames "
                             "(2x2 is the smallest); use --no-video")
        self.size = (width, height)
        self._frames = 0

    def write(self, frame: Frame, index: int, box: Box | None, score: float | None,
              text_lines: Sequence[str] = (), overlays: Sequence[Overlay] = ()) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise InputError(f"frame {index + 1} is {frame.shape[1]}x{frame.shape[0]}, the video is "
                             f"{self.size[0]}x{self.size[1]}: OpenCV would drop it silently")
        self.write_bgr(annotate(frame, index, box, score, text_lines, overlays))

    def write_bgr(self, canvas: np.ndarray) -> None:
        """Write an already drawn BGR picture of the writer's size (e.g. two panels side by side).

        OpenCV's writer only warns, once a frame, when the disk is full: it is silenced here and the file
        system asked instead, so a full disk is one ``OSError`` naming the video."""
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._writer.write(np.ascontiguousarray(canvas))
        finally:
            cv2.utils.logging.setLogLevel(previous)
        self._frames += 1
        if self._frames % DISK_CHECK_EVERY == 1 and os.statvfs(self._tmp.parent).f_bavail == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._writer.release()
        make_shareable(self._tmp)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file (used when the run fails)."""
        self._writer.release()
        self._tmp.unlink(missing_ok=True)


def annotate(frame: Frame, index: int, box: Box | None, score: float | None,
             text_lines: Sequence[str] = (), overlays: Sequence[Overlay] = ()) -> np.ndarray:
    """The frame as BGR with overlays, the tracked box (green), the frame number, score and text."""
    canvas = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    for overlay in overlays:
        _draw_box(canvas, overlay.box, overlay.color[::-1], 1, overlay.label)
    if box is not None and box.is_valid():
        _draw_box(canvas, box, (0, 255, 0), 2, None)
    status = f"#{index + 1}" + (f"  score {score:.2f}" if score is not None else "") + ("" if box is not None else "  target absent")
    rows = [status]
    for line in dict.fromkeys(text_lines):  # a line said twice (the same description kept twice) is shown once
        rows += fit_text(line, canvas.shape[1] - 12, LABEL_SCALE)
    for row, line in enumerate(rows):
        y = 18 + 16 * row
        # A dark band, not a thick outline: Hershey glyph spacing grows with thickness, so an
        # outline drawn thicker than the text does not line up with it.
        (width, height), baseline = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, 1)
        cv2.rectangle(canvas, (3, y - height - 3), (9 + width, y + baseline), (0, 0, 0), cv2.FILLED)
        cv2.putText(canvas, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


LABEL_SCALE = 0.45  # Hershey simplex at 0.45: readable down to 320-px frames


def fit_text(text: str, width: int, scale: float = LABEL_SCALE, max_rows: int = 2) -> list[str]:
    """``text`` wrapped at spaces into rows at most ``width`` pixels wide, ``max_rows`` at most; what does not
    fit is cut and ends in ``...`` (a long background list must not run off the frame)."""
    def fits(line: str) -> bool:
        return cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width

    rows: list[str] = []
    words = text.split(" ")
    while words and len(rows) < max_rows:
        line = words.pop(0)
        while words and fits(f"{line} {words[0]}"):
            line = f"{line} {words.pop(0)}"
        rows.append(line)
    if words:  # more than max_rows: the last row ends in "..."
        rows[-1] = f"{rows[-1]} {' '.join(words)}"
    for index, row in enumerate(rows):
        if not fits(row):  # a word wider than the frame, or the rest of the text
            while row and not fits(row + "..."):
                row = row[:-1]
            rows[index] = row.rstrip() + "..."
    return rows


def _draw_box(canvas: np.ndarray, box: Box, color_bgr: tuple[int, int, int], thickness: int, label: str | None) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box.to_xyxy())
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color_bgr, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(canvas, label[:40], (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color_bgr, 1, cv2.LINE_AA)
