"""Frame sources (video file or image folder, read lazily) and the annotated-video writer.

Frames leave this module as RGB uint8 arrays; OpenCV's BGR stays inside.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from chattracker.errors import InputError
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


def read_image(path: str | os.PathLike[str]) -> Frame:
    """Read one image as RGB uint8; unreadable files raise ``InputError`` naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
            for file in self.files:
                yield read_image(file)
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
        finally:
            capture.release()


def check_init_box(box: Box, width: int, height: int) -> Box:
    """Validate the initial box against the frame: errors for empty or outside, clip when partly out."""
    if not np.isfinite(box.to_list()).all():
        raise InputError(f"initial box {box.to_list()} has non-finite values")
    if box.w <= 0 or box.h <= 0:
        raise InputError(f"initial box {box.to_list()} has zero or negative size; give x,y,w,h with w,h > 0")
    clipped = box.clip(width, height)
    if clipped.w < 1 or clipped.h < 1:
        raise InputError(f"initial box {box.to_list()} is outside the {width}x{height} frame")
    if clipped != box:
        logger.warning("initial box %s extends past the %dx%d frame; clipped to %s", box.to_list(), width, height, clipped.to_list())
    return clipped


@dataclass
class Overlay:
    """Extra boxes to draw: (box, label, RGB colour)."""

    box: Box
    label: str
    color: tuple[int, int, int]


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
            raise InputError(f"cannot open video writer for {self.path}")
        self.size = (width, height)

    def write(self, frame: Frame, index: int, box: Box | None, score: float | None,
              text_lines: Sequence[str] = (), overlays: Sequence[Overlay] = ()) -> None:
        self.write_bgr(annotate(frame, index, box, score, text_lines, overlays))

    def write_bgr(self, canvas: np.ndarray) -> None:
        """Write an already drawn BGR picture of the writer's size (e.g. two panels side by side)."""
        self._writer.write(np.ascontiguousarray(canvas))

    def close(self) -> None:
        """Finish the file and move it into place."""
        self._writer.release()
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
    for row, line in enumerate([status, *text_lines]):
        y = 18 + 16 * row
        # A dark band, not a thick outline: Hershey glyph spacing grows with thickness, so an
        # outline drawn thicker than the text does not line up with it.
        (width, height), baseline = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(canvas, (3, y - height - 3), (9 + width, y + baseline), (0, 0, 0), cv2.FILLED)
        cv2.putText(canvas, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def _draw_box(canvas: np.ndarray, box: Box, color_bgr: tuple[int, int, int], thickness: int, label: str | None) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box.to_xyxy())
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color_bgr, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(canvas, label[:40], (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color_bgr, 1, cv2.LINE_AA)
