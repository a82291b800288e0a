"""Sessions of `chattracker serve`: one per browser tab, each with an unguessable id and its own temporary
folder (the upload, the ground truth, the results), removed when the tab closes, when the session has been
idle too long, or when the server stops. Nothing the client sends is opened as a server path: uploads are
written under the session's folder by the server's own names, and only stream URLs of allowed schemes are read.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from chattracker.errors import ChatTrackerError
from chattracker.types import Box, Frame
from chattracker.video import FrameSource, LiveSource, StreamError, check_init_box, redact

logger = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("http", "https", "rtsp")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv"}


class Refused(Exception):
    """A request the server turns down: an HTTP status and one sentence for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Limits:
    """What one client may ask of the server (``chattracker serve`` options)."""

    max_upload_bytes: int = 200 * 2**20
    max_seconds: float = 120.0  # video length, and how long a stream is tracked
    max_running: int = 2  # runs at once: each takes a CPU core or more
    max_sessions: int = 16
    idle_seconds: float = 1800.0  # a session untouched this long is removed with its folder
    stall_timeout: float = 10.0  # a stream with no frame for this long ends its run


@dataclass
class Session:
    """One client's video (or stream), first frame, ground truth and run."""

    id: str
    folder: Path
    source: str = ""  # the uploaded file (inside ``folder``) or the stream URL
    label: str = ""  # what the page shows: the upload's name or the redacted URL
    is_stream: bool = False
    width: int = 0
    height: int = 0
    fps: float = 30.0
    num_frames: int | None = None
    first_frame: Frame | None = None
    truth: np.ndarray | None = None
    run: object = None  # a web.runner.Run once started
    last_used: float = field(default_factory=time.monotonic)

    def describe(self) -> dict[str, object]:
        return {"id": self.id, "label": self.label, "stream": self.is_stream, "width": self.width,
                "height": self.height, "fps": round(self.fps, 3), "frames": self.num_frames}

    def check_box(self, values: object) -> Box:
        """The box the page sent, checked against the first frame (outside or empty: refused)."""
        try:
            box = Box.from_any(values)  # type: ignore[arg-type]
        except (TypeError, ValueError) as error:
            raise Refused(400, f"the box must be four numbers x, y, w, h: {error}") from None
        try:
            return check_init_box(box, self.width, self.height)
        except ChatTrackerError as error:
            raise Refused(400, str(error)) from None


class SessionManager:
    """Creates, finds and removes sessions; counts the runs going on."""

    def __init__(self, limits: Limits | None = None, root: Path | None = None) -> None:
        self.limits = limits or Limits()
        self.root = Path(tempfile.mkdtemp(prefix="chattracker-serve-", dir=root))
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.starting = threading.Lock()  # held while a run is checked against the limits and started
        self.closing = False

    # --- life cycle --------------------------------------------------------------------------------

    def create(self) -> Session:
        self.sweep()
        with self._lock:
            if len(self._sessions) >= self.limits.max_sessions:
                raise Refused(429, f"the server holds {self.limits.max_sessions} sessions already (--max-sessions); "
                                   "close another tab or try again later")
            session_id = secrets.token_urlsafe(16)
            folder = self.root / session_id
            folder.mkdir(mode=0o700)
            session = Session(session_id, folder)
            self._sessions[session_id] = session
        return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise Refused(404, "no such session (closed, expired, or the server restarted): load the page again")
        session.last_used = time.monotonic()
        return session

    def remove(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            self._drop(session)

    def _drop(self, session: Session) -> None:
        run = session.run
        if run is not None:
            run.stop()  # type: ignore[attr-defined]
            run.join(timeout=self.limits.stall_timeout + 5)  # type: ignore[attr-defined]
        shutil.rmtree(session.folder, ignore_errors=True)

    def sweep(self) -> None:
        """Remove sessions idle longer than the limit (a running one is never idle)."""
        now = time.monotonic()
        with self._lock:
            stale = [s for s in self._sessions.values()
                     if now - s.last_used > self.limits.idle_seconds and not (s.run and s.run.running)]  # type: ignore[attr-defined]
            for session in stale:
                del self._sessions[session.id]
        for session in stale:
            self._drop(session)

    def close(self) -> None:
        """Stop every run and remove every session folder (server shutdown)."""
        self.closing = True
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            self._drop(session)
        shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.run is not None and s.run.running)  # type: ignore[attr-defined]

    # --- sources -----------------------------------------------------------------------------------

    def open_upload(self, session: Session, saved: Path, name: str) -> None:
        """Check the uploaded file is a video within the duration limit and read its first frame."""
        try:
            source = FrameSource(saved)
        except ChatTrackerError:
            raise Refused(415, f"{name!r} is not a video OpenCV can read (mp4, avi, mov, mkv, webm...)") from None
        if source.is_folder:
            raise Refused(415, f"{name!r} is not a video")
        frames = source.num_frames
        seconds = frames / source.fps if frames else None
        if seconds is not None and seconds > self.limits.max_seconds:
            raise Refused(413, f"{name!r} lasts {seconds:.0f} s ({frames} frames at {source.fps:g} fps); the limit "
                               f"is {self.limits.max_seconds:g} s (--max-duration)")
        first = next(iter(source))
        session.source, session.label, session.is_stream = str(saved), name, False
        self._set_first(session, first, source.fps, frames)

    def open_stream(self, session: Session, url: str) -> None:
        """Check the URL is a stream of an allowed scheme (never a path) and read its first frame."""
        url = url.strip()
        check_stream_url(url)
        try:
            source = LiveSource(url, stall_timeout=self.limits.stall_timeout)
        except StreamError as error:
            raise Refused(400, str(error)) from None
        try:
            first = next(iter(source))
        finally:
            source.close()
        session.source, session.label, session.is_stream = url, redact(url), True
        self._set_first(session, first, source.fps, source.num_frames)

    @staticmethod
    def _set_first(session: Session, frame: Frame, fps: float, frames: int | None) -> None:
        session.first_frame = frame
        session.height, session.width = frame.shape[:2]
        session.fps, session.num_frames = fps, frames

    def set_truth(self, session: Session, data: bytes) -> int:
        """Parse an uploaded ground-truth file (one x,y,w,h line per frame); returns its row count."""
        path = session.folder / "groundtruth.txt"
        path.write_bytes(data)
        from chattracker_eval.textfile import read_boxes

        try:
            truth = read_boxes(path)
        except Exception as error:  # any parse failure is the file's fault: one sentence for the page
            raise Refused(400, f"the ground-truth file is not x,y,w,h rows: {error}") from None
        if truth.ndim != 2 or len(truth) == 0:
            raise Refused(400, "the ground-truth file has no x,y,w,h rows")
        session.truth = truth
        return len(truth)


def check_stream_url(url: str) -> None:
    """Only ``http``, ``https`` and ``rtsp`` URLs with a host; a path (``/etc/passwd``, ``file://``) is refused."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.hostname:
        shown = url if len(url) <= 80 else url[:77] + "..."
        raise Refused(400, f"{shown!r} is not a stream URL: give http://, https:// or rtsp:// with a host "
                           "(the server never opens a path of its own file system)")


def encode_jpeg(canvas_bgr: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", canvas_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def upload_name(name: str | None) -> tuple[str, str]:
    """(name shown on the page, suffix for the saved file): the client's name is never a server path."""
    shown = Path((name or "video").replace("\\", "/")).name[:120] or "video"
    suffix = Path(shown).suffix.lower()
    return shown, suffix if suffix in VIDEO_SUFFIXES else ".video"
