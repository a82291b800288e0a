"""One run of `chattracker serve`: the base tracker and, when asked, ChatTracker around its own copy of the
same base, side by side on the same frames, in a thread. The page watches ``latest`` (the newest frame's
panels as JPEG, boxes, scores, the wrapper's descriptions and events); a slow page skips frames instead of
slowing the run. At the end the results are written to the session's folder for download."""

from __future__ import annotations

import base64
import logging
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from chattracker.errors import ChatTrackerError
from chattracker.results import write_boxes, write_json
from chattracker.types import Box, Frame, Tracker, TrackResult
from chattracker.video import AnnotatedVideoWriter, FrameSource, LiveSource, StreamError, annotate
from chattracker.web.sessions import Limits, Refused, Session, encode_jpeg

logger = logging.getLogger(__name__)

STREAM_WIDTH = 640  # panels wider than this are scaled down for the page (the mp4 keeps the full size)
RESULT_FILES = ("base_boxes.txt", "chattracker_boxes.txt", "track.json", "annotated.mp4")


def build_trackers(name: str, wrap: bool) -> dict[str, Tracker]:
    """``{"base": ..., "chattracker": ...}``: two independent base trackers, the second wrapped."""
    from chattracker.wrapper import build_chattracker
    from chattracker_trackers.base import build_tracker

    try:
        trackers = {"base": build_tracker(name)}
        if wrap:
            trackers["chattracker"] = build_chattracker(build_tracker(name))
    except ChatTrackerError as error:
        raise Refused(400, str(error)) from None
    return trackers


class Run:
    """Tracks the session's source with one or two trackers; ``latest`` and ``state`` are for the page."""

    def __init__(self, session: Session, limits: Limits, tracker: str, wrap: bool, box: Box, text: str | None) -> None:
        self.session, self.limits = session, limits
        self.tracker_name, self.text, self.box = tracker, text, box
        self.trackers = build_trackers(tracker, wrap)
        self.folder = session.folder / "results"
        self.folder.mkdir(exist_ok=True)
        self.state = "running"  # then "done", "stopped" or "failed"
        self.message = ""
        self.frames_done = 0
        self.boxes: dict[str, list[list[float]]] = {key: [] for key in self.trackers}
        self.scores_seen: dict[str, list[float | None]] = {key: [] for key in self.trackers}
        self.latest: dict[str, Any] | None = None
        self.version = 0
        self.scores: dict[str, dict[str, float]] | None = None
        self.files: list[str] = []
        self.fps = 0.0
        self.dropped = 0
        self._stopping = False
        self._source: FrameSource | LiveSource | None = None
        self._thread = threading.Thread(target=self._work, name=f"chattracker-serve-{session.id[:8]}", daemon=True)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        if isinstance(self._source, LiveSource):
            self._source.stop()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the loop --------------------------------------------------------------------------------------

    def _work(self) -> None:
        session, writer = self.session, None
        started = time.perf_counter()
        outcome, message = "failed", ""
        try:
            if session.is_stream:
                self._source = LiveSource(session.source, self.limits.stall_timeout)
                limit = max(1, int(self.limits.max_seconds * self._source.fps))
            else:
                self._source = FrameSource(session.source)
                limit = self._source.num_frames or int(self.limits.max_seconds * self._source.fps)
            width = session.width * len(self.trackers)
            writer = AnnotatedVideoWriter(self.folder / "annotated.mp4", self._source.fps, width, session.height)
            for index, frame in enumerate(self._source):
                if self._stopping or index >= limit:
                    break
                if frame.shape[:2] != (session.height, session.width):
                    raise StreamError(f"frame {index + 1} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                                      f"{session.width}x{session.height}")
                panels = {key: self._step(key, tracker, frame, index) for key, tracker in self.trackers.items()}
                writer.write_bgr(np.hstack(list(panels.values())))
                self.frames_done = index + 1
                self.fps = self.frames_done / max(time.perf_counter() - started, 1e-6)
                self._publish(index, panels)
            outcome = "stopped" if self._stopping else "done"
        except (ChatTrackerError, OSError) as error:
            message = str(error)
        except Exception as error:  # a tracker fault: the page gets a sentence, the log the traceback
            logger.exception("run of session %s failed", session.id)
            message = f"{type(error).__name__}: {error}"
        finally:
            if isinstance(self._source, LiveSource):
                self.dropped = self._source.dropped
                self._source.close()
            self._finish(writer, outcome, message)

    def _step(self, key: str, tracker: Tracker, frame: Frame, index: int) -> np.ndarray:
        """Track one frame with one tracker; returns its annotated panel (BGR)."""
        from chattracker.commands.track import overlays_of, text_lines_of

        if index == 0:
            tracker.initialize(frame, self.box, self.text)
            result = TrackResult(self.box, None, {})
        else:
            result = tracker.track(frame)
        nan = [float("nan")] * 4
        self.boxes[key].append(result.box.to_list() if result.box is not None else nan)
        self.scores_seen[key].append(result.score)
        title = self.tracker_name if key == "base" else f"ChatTracker ({self.tracker_name})"
        lines = [title, *(text_lines_of(result.info, None) if key != "base" else [])]
        return annotate(frame, index, result.box, result.score, lines, overlays_of(result.info))

    def _publish(self, index: int, panels: dict[str, np.ndarray]) -> None:
        images = {}
        for key, panel in panels.items():
            if panel.shape[1] > STREAM_WIDTH:
                scale = STREAM_WIDTH / panel.shape[1]
                panel = cv2.resize(panel, (STREAM_WIDTH, max(1, round(panel.shape[0] * scale))), interpolation=cv2.INTER_AREA)
            images[key] = base64.b64encode(encode_jpeg(panel)).decode("ascii")
        self.latest = {"frame": index + 1, "total": self.session.num_frames, "fps": round(self.fps, 1),
                       "images": images, "boxes": {k: v[-1] for k, v in self.boxes.items()},
                       "scores": {k: v[-1] for k, v in self.scores_seen.items()}, **self.timeline()}
        self.version += 1

    def timeline(self) -> dict[str, Any]:
        """The wrapper's descriptions and events (corrections, recoveries, re-descriptions) so far."""
        chat = self.trackers.get("chattracker")
        if chat is None:
            return {"descriptions": [], "events": []}
        events = [{k: v for k, v in event.items() if isinstance(v, (str, int, float, list, type(None)))}
                  for event in list(getattr(chat, "events", []) or [])]
        log = getattr(chat, "description_log", None)
        return {"descriptions": log() if callable(log) else [], "events": events}

    # --- results ---------------------------------------------------------------------------------------

    def _finish(self, writer: AnnotatedVideoWriter | None, outcome: str, message: str) -> None:
        """Write what was tracked (also after a failure mid-way), then say how the run ended: the state
        leaves "running" only once the files are in place."""
        try:
            if self.frames_done == 0:
                if writer is not None:
                    writer.abort()
                outcome, message = "failed", message or "no frame was tracked"
                return
            if writer is not None:
                writer.close()
            for key, boxes in self.boxes.items():
                write_boxes(self.folder / f"{key}_boxes.txt", boxes)
            self.scores = self._score()
            write_json(self.folder / "track.json", self.record(outcome, message))
            self.files = [name for name in RESULT_FILES if (self.folder / name).is_file()]
        except Exception as error:
            logger.exception("writing the results of session %s failed", self.session.id)
            outcome, message = "failed", f"writing the results failed: {error}"
        finally:
            self.session.last_used = time.monotonic()  # idle from the end of the run, not its start
            self.message, self.state = message, outcome
            self.version += 1

    def _score(self) -> dict[str, dict[str, float]] | None:
        """AUC, precision at 20 px and normalised precision (official protocol) against the uploaded truth."""
        truth = self.session.truth
        if truth is None:
            return None
        from chattracker_eval.protocols import get_protocol, score_sequence

        count = min(len(truth), self.frames_done)
        protocol, _ = get_protocol("official")
        scores = {}
        for key, boxes in self.boxes.items():
            curves = score_sequence(protocol, np.asarray(boxes[:count], dtype=float), truth[:count], None)
            scores[key] = {"auc": round(100 * curves.auc, 2), "precision": round(100 * curves.precision_at_20, 2),
                           "norm_precision": round(100 * curves.norm_precision_at_02, 2), "frames": count}
        return scores

    def record(self, state: str, message: str) -> dict[str, Any]:
        return {"source": self.session.label, "tracker": self.tracker_name, "wrapped": "chattracker" in self.trackers,
                "init_box": self.box.to_list(), "text": self.text, "state": state, "message": message,
                "frames": self.frames_done, "fps": round(self.fps, 2), "dropped": self.dropped,
                "scores": self.scores, "boxes": self.boxes, **self.timeline()}

    def status(self) -> dict[str, Any]:
        """The end of the run as the page shows it (no images)."""
        return {"state": self.state, "message": self.message, "frames": self.frames_done, "fps": round(self.fps, 1),
                "dropped": self.dropped, "scores": self.scores, "files": self.files, **self.timeline()}

    def file(self, name: str) -> Path:
        """A result file by its fixed name (never a client path); only once the run is over."""
        if name not in RESULT_FILES:
            raise Refused(404, f"no result file {name!r}; the files are {', '.join(RESULT_FILES)}")
        if self.running:
            raise Refused(409, "the run is still going; the files are offered when it ends")
        if name not in self.files:
            raise Refused(404, f"this run has no {name}")
        return self.folder / name
