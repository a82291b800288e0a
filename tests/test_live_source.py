"""Live sources in `chattracker track`: an MJPEG-over-HTTP stream served here on 127.0.0.1 from real frames
(OTB Crossing), read through OpenCV's FFmpeg backend by the real CLI in a subprocess."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from chattracker.errors import InputError
from chattracker.video import LiveSource, StreamError, is_live, open_source, redact, stream_scheme

CROSSING_BOX = "205,151,17,50"


def crossing_jpegs(data: Path, count: int = 120) -> list[bytes]:
    """The first ``count`` frames of OTB Crossing (360x240) as the JPEG files they are."""
    return [path.read_bytes() for path in sorted((data / "otb_crossing" / "Crossing" / "img").glob("*.jpg"))[:count]]


class LocalServer:
    """An HTTP server on 127.0.0.1 (a free port) in a thread, answering GET with ``self.answer``; always shut
    down on exit."""

    name = ""

    def __init__(self) -> None:
        self.closing = threading.Event()
        answer = self.answer

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{self.name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class MjpegServer(LocalServer):
    """``/stream.mjpg``: the frames at ``fps`` as multipart/x-mixed-replace, then ``after``: "close" (the
    stream dies), "stall" (the connection stays open, silent) or "loop" (again from the start)."""

    name = "stream.mjpg"

    def __init__(self, jpegs: list[bytes], fps: float = 30.0, after: str = "close") -> None:
        self.jpegs, self.fps, self.after = jpegs, fps, after
        super().__init__()

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        if request.path != "/" + self.name:
            request.send_error(404)
            return
        request.send_response(200)
        request.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        request.end_headers()
        while not self.closing.is_set():
            for jpeg in self.jpegs:
                if self.closing.is_set():
                    return
                request.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                                    + jpeg + b"\r\n")
                request.wfile.flush()
                time.sleep(1.0 / self.fps)
            if self.after == "stall":
                self.closing.wait(60)
            if self.after != "loop":
                return


class FileServer(LocalServer):
    """One file with HTTP range requests, as web servers serve it (FFmpeg seeks within an mp4)."""

    def __init__(self, path: Path, answer_ranges: bool = True) -> None:
        self.name, self.data, self.answer_ranges = path.name, path.read_bytes(), answer_ranges
        super().__init__()

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        start, end = 0, len(self.data) - 1
        wanted = request.headers.get("Range", "")
        if self.answer_ranges and wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start, end = int(first or 0), min(int(last) if last else end, end)
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{end}/{len(self.data)}")
        else:
            request.send_response(200)
        request.send_header("Content-Type", "video/mp4")
        request.send_header("Content-Length", str(end - start + 1))
        if self.answer_ranges:
            request.send_header("Accept-Ranges", "bytes")
        request.end_headers()
        request.wfile.write(self.data[start:end + 1])


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "chattracker.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def check_outputs(out: Path) -> dict:
    """The published run is whole: boxes.txt, track.json and the video agree on the frame count."""
    record = json.loads((out / "track.json").read_text())
    boxes = np.loadtxt(out / "boxes.txt", delimiter=",", ndmin=2)
    assert len(boxes) == len(record["frames"]) == record["live"]["tracked"]
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(boxes)
    video.release()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))
    return record


def test_stream_is_tracked_with_dropped_frames_and_one_error_line_when_it_dies(shared_data: Path, tmp_path: Path) -> None:
    # 120 frames at 60 fps; the first frame's initialisation alone outlasts a few frame intervals, so frames drop
    with MjpegServer(crossing_jpegs(shared_data), fps=60, after="close") as server:
        run = cli("track", server.url, "--box", CROSSING_BOX, "--out", str(tmp_path / "out"), "--no-progress",
                  "--stall-timeout", "5")
        stdout, stderr = run.communicate(timeout=120)
    errors = [line for line in stderr.splitlines() if line.startswith("chattracker: error:")]
    assert run.returncode == 2, stderr
    assert len(errors) == 1 and [line for line in stderr.splitlines() if line.strip()][-1] == errors[0], stderr
    assert f"stream {server.url} closed the connection after 120 frames received" in errors[0]
    assert "rtsp:/" not in stderr and "does not exist" not in stderr
    record = check_outputs(tmp_path / "out")
    live = record["live"]
    assert live["received"] == 120 and live["dropped"] > 0 and live["tracked"] + live["dropped"] == 120
    assert f"{live['dropped']} of 120 received frames dropped" in stdout
    assert record["frames"][0]["box"] == [205.0, 151.0, 17.0, 50.0]


def test_stalled_stream_gives_up_after_the_stall_timeout(shared_data: Path, tmp_path: Path) -> None:
    with MjpegServer(crossing_jpegs(shared_data, 20), fps=30, after="stall") as server:
        started = time.monotonic()
        run = cli("track", server.url, "--box", CROSSING_BOX, "--out", str(tmp_path / "out"), "--no-progress",
                  "--stall-timeout", "1.5", "--plain")
        stdout, stderr = run.communicate(timeout=60)
        elapsed = time.monotonic() - started
    assert run.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("chattracker: error: stream") and "stopped sending frames for 1.5 s" in lines[-1]
    assert sum(line.startswith("chattracker: error") for line in lines) == 1, stderr
    assert elapsed < 40
    check_outputs(tmp_path / "out")


def test_ctrl_c_stops_a_live_run_and_keeps_what_was_tracked(shared_data: Path, tmp_path: Path) -> None:
    with MjpegServer(crossing_jpegs(shared_data, 60), fps=30, after="loop") as server:
        run = cli("track", server.url, "--box", CROSSING_BOX, "--out", str(tmp_path / "out"), "--no-progress", "--plain")
        deadline = time.monotonic() + 60
        line = ""
        while "Ctrl-C stops" not in line and time.monotonic() < deadline:  # tracking has started
            line = run.stderr.readline()
            assert line or run.poll() is None, "the run ended before tracking started"
        time.sleep(1.0)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert "error" not in stderr
    record = check_outputs(tmp_path / "out")
    assert record["live"]["stopped"] == "ctrl-c" and record["live"]["tracked"] >= 2
    assert "live: stream" in stdout


def test_a_video_file_over_http_is_tracked_whole_in_order(shared_data: Path, tmp_path: Path) -> None:
    from tests.test_serve_api import make_clip

    clip = make_clip(shared_data, tmp_path / "crossing.mp4")
    with FileServer(clip) as server:
        run = cli("track", server.url, "--box", CROSSING_BOX, "--plain", "--out", str(tmp_path / "out"), "--no-progress")
        stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    record = check_outputs(tmp_path / "out")
    assert record["live"]["received"] == record["live"]["tracked"] == 30 and record["live"]["dropped"] == 0
    assert record["live"]["live"] is False
    with FileServer(clip, answer_ranges=False) as server:
        run = cli("track", server.url, "--box", CROSSING_BOX, "--plain", "--out", str(tmp_path / "out2"))
        stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 2
    assert stderr.strip().splitlines() == [f"chattracker: error: stream {server.url} opened but gave no frame (not a "
                                           "video, or a server that cannot seek within a file)"]


def test_urls_are_sources_not_paths_and_unknown_schemes_are_refused(tmp_path: Path) -> None:
    assert is_live("0") and is_live("rtsp://127.0.0.1:8554/live") and is_live("https://example.org/v.mp4")
    assert not is_live(str(tmp_path))
    with pytest.raises(InputError, match=r"ftp://127.0.0.1/v.mp4: ftp:// sources are not supported"):
        stream_scheme("ftp://127.0.0.1/v.mp4")
    assert redact("rtsp://user:secret@127.0.0.1:8554/live") == "rtsp://user:***@127.0.0.1:8554/live"


def test_unreachable_stream_is_one_line_naming_the_url_unmangled(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port of 127.0.0.1 with nothing listening once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/live"
    run = cli("track", url, "--box", "1,1,5,5", "--out", str(tmp_path / "out"), "--stall-timeout", "3")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 2
    assert stderr.strip().splitlines() == [f"chattracker: error: stream {url} cannot be opened"]
    assert not (tmp_path / "out").exists()


def test_a_camera_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StreamError, match="camera 9"):
        open_source("9", stall_timeout=2)
    run = cli("track", "9", "--box", "1,1,5,5", "--out", str(tmp_path / "out"), "--stall-timeout", "2")
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and stderr.strip().splitlines() == ["chattracker: error: camera 9 cannot be opened"]


def test_live_source_keeps_only_the_newest_frame(shared_data: Path) -> None:
    # A consumer slower than the stream: memory stays at one frame and the rest is counted as dropped
    with MjpegServer(crossing_jpegs(shared_data, 40), fps=100, after="close") as server:
        source = LiveSource(server.url, stall_timeout=5)
        taken = []
        with pytest.raises(StreamError, match="closed the connection after 40 frames received"):
            for frame in source:
                taken.append(frame.shape)
                assert len(source._buffer) <= 1
                time.sleep(0.05)
    assert taken[0] == (240, 360, 3) and source.received == 40
    assert source.dropped == 40 - len(taken) and source.dropped > 10
