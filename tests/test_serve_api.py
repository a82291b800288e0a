"""`chattracker serve` over HTTP: the real app on a real uvicorn server on 127.0.0.1 (a free port), clips made
from real frames (OTB Crossing). Every bad request is a 4xx with one sentence, and the server keeps serving."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest

from chattracker.commands.serve import check_port, exposure_warning
from chattracker.errors import InputError
from chattracker.web.sessions import Limits

CROSSING_BOX = [205, 151, 17, 50]


def make_clip(data: Path, out: Path, first: int = 0, count: int = 30, fps: float = 30.0) -> Path:
    """An mp4 of Crossing frames ``first`` .. ``first + count - 1`` (real frames, 360x240)."""
    files = sorted((data / "otb_crossing" / "Crossing" / "img").glob("*.jpg"))[first:first + count]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (360, 240))
    for file in files:
        writer.write(cv2.imread(str(file)))
    writer.release()
    return out


def crossing_truth(data: Path, first: int = 0, count: int = 30) -> bytes:
    lines = (data / "otb_crossing" / "Crossing" / "groundtruth_rect.txt").read_text().split("\n")[first:first + count]
    return ("\n".join(",".join(line.split()) for line in lines) + "\n").encode()


@contextlib.contextmanager
def serving(limits: Limits) -> Iterator[tuple[str, Any]]:
    """The app on uvicorn in a thread, on a socket bound here (no port race); always shut down."""
    import uvicorn

    from chattracker.web.app import create_app

    app = create_app(limits)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
    assert not thread.is_alive()
    assert not app.state.manager.root.exists(), "session folders outlived the server"


def call(url: str, method: str = "GET", body: bytes | dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON or bytes); 4xx and 5xx come back as values, not exceptions."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, data, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        status, data, kind = error.code, error.read(), error.headers.get_content_type()
    return status, json.loads(data) if kind == "application/json" else data


def upload(base: str, path: Path, name: str | None = None) -> tuple[int, Any]:
    return call(f"{base}/api/sessions/upload", "POST", path.read_bytes(), {"X-Filename": name or path.name})


def upload_truth(base: str, session: str, data: bytes) -> tuple[int, Any]:
    boundary = "chattrackertest"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"gt.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return call(f"{base}/api/sessions/{session}/truth", "POST", body,
                {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def wait_end(base: str, session: str, timeout: float = 60) -> dict:
    """Read the run's server-sent events to the end: (frame messages, end message)."""
    frames, end = [], None
    with urllib.request.urlopen(f"{base}/api/sessions/{session}/events", timeout=timeout) as response:
        event = None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                payload = json.loads(line[6:])
                if event == "frame":
                    frames.append(payload)
                else:
                    end = payload
                    break
    return {"frames": frames, "end": end}


def assert_still_serving(base: str) -> None:
    status, config = call(f"{base}/api/config")
    assert status == 200 and "nanotrack_v2" in config["trackers"]


@pytest.fixture(scope="module")
def clips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"a": make_clip(shared_data, folder / "crossing_a.mp4"),
            "b": make_clip(shared_data, folder / "crossing_b.mp4", first=60),
            "long": make_clip(shared_data, folder / "crossing_slow.mp4", count=30, fps=5.0),
            "truth": folder / "unused"}


LIMITS = Limits(max_upload_bytes=600_000, max_seconds=5.0, max_running=1, stall_timeout=5.0)


def test_upload_run_watch_score_and_download(shared_data: Path, clips: dict[str, Path]) -> None:
    with serving(LIMITS) as (base, app):
        status, session = upload(base, clips["a"])
        assert status == 200 and (session["width"], session["height"], session["frames"]) == (360, 240, 30)
        status, first = call(f"{base}/api/sessions/{session['id']}/first.jpg")
        assert status == 200 and cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR).shape == (240, 360, 3)
        assert upload_truth(base, session["id"], crossing_truth(shared_data)) == (200, {"rows": 30})
        status, started = call(f"{base}/api/sessions/{session['id']}/run", "POST",
                               {"box": CROSSING_BOX, "tracker": "nanotrack_v2", "wrap": True})
        assert status == 202, started
        run = wait_end(base, session["id"])
        end = run["end"]
        assert end["state"] == "done" and end["frames"] == 30, end
        last = run["frames"][-1]
        assert last["frame"] == 30 and set(last["images"]) == {"base", "chattracker"}
        assert end["descriptions"][0]["frame"] == 1 and end["descriptions"][0]["foreground"]
        for key in ("base", "chattracker"):
            assert end["scores"][key]["frames"] == 30 and 0 <= end["scores"][key]["auc"] <= 100
        assert set(end["files"]) == {"base_boxes.txt", "chattracker_boxes.txt", "track.json", "annotated.mp4"}
        status, boxes = call(f"{base}/api/sessions/{session['id']}/files/chattracker_boxes.txt")
        rows = np.loadtxt(boxes.decode().splitlines(), delimiter=",")
        assert status == 200 and rows.shape == (30, 4) and rows[0].tolist() == CROSSING_BOX
        status, record = call(f"{base}/api/sessions/{session['id']}/files/track.json")
        assert record["frames"] == 30 and record["scores"] == end["scores"] and record["wrapped"]
        status, video = call(f"{base}/api/sessions/{session['id']}/files/annotated.mp4")
        assert status == 200 and len(video) > 10_000
        # fixed names only: no path reaches the file system
        assert call(f"{base}/api/sessions/{session['id']}/files/..%2F..%2Fetc%2Fpasswd")[0] == 404
        folder = app.state.manager.root / session["id"]
        assert folder.is_dir()
        assert call(f"{base}/api/sessions/{session['id']}/close", "POST") == (200, {"closed": True})
        assert not folder.exists()
        assert call(f"{base}/api/sessions/{session['id']}/status")[0] == 404


def test_bad_input_is_a_4xx_sentence_and_the_server_keeps_serving(shared_data: Path, clips: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(clips["a"].read_bytes() * 5)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 100)
    with serving(LIMITS) as (base, app):
        status, answer = upload(base, big)
        assert status == 413 and "larger than the upload limit of 0.5722 MB" in answer["error"]
        assert_still_serving(base)
        status, answer = upload(base, text)
        assert status == 415 and answer["error"].startswith("'notes.mp4' is not a video OpenCV can read")
        assert_still_serving(base)
        status, answer = upload(base, clips["long"])
        assert status == 413 and "lasts 6 s (30 frames at 5 fps); the limit is 5 s" in answer["error"]
        for url in ("/etc/passwd", "file:///etc/passwd", "../../secret.mp4", "ftp://127.0.0.1/x.mp4", "http://"):
            status, answer = call(f"{base}/api/sessions/stream", "POST", {"url": url})
            assert status == 400 and "is not a stream URL" in answer["error"], url
        assert list(app.state.manager.root.iterdir()) == [], "refused requests left session folders"
        status, session = upload(base, clips["a"], name="../../../../tmp/evil.mp4")
        assert status == 200 and session["label"] == "evil.mp4"
        run_url = f"{base}/api/sessions/{session['id']}/run"
        for box, message in (([400, 300, 20, 20], "is outside the 360x240 frame"), ([10, 10, 0, 5], "zero or negative size"),
                             ("left", "four numbers")):
            status, answer = call(run_url, "POST", {"box": box, "tracker": "nanotrack_v2"})
            assert status == 400 and message in answer["error"], answer
        status, answer = call(run_url, "POST", {"box": CROSSING_BOX, "tracker": "no_such_tracker"})
        assert status == 400 and "unknown tracker 'no_such_tracker'" in answer["error"]
        status, answer = upload_truth(base, session["id"], b"1,2,3,4\n")
        assert status == 400 and "has 1 rows but the video has 30 frames" in answer["error"]
        assert call(f"{base}/api/sessions/nonexistent/first.jpg")[0] == 404
        assert_still_serving(base)


def test_a_sentence_finds_the_target_on_the_first_frame(clips: dict[str, Path]) -> None:
    with serving(LIMITS) as (base, app):
        _, session = upload(base, clips["a"])
        find = f"{base}/api/sessions/{session['id']}/find"
        status, found = call(find, "POST", {"text": "the person in black on the right"})
        assert status == 200 and found["lines"][0].startswith("language start: 'the person in black on the right'")
        x, y, w, h = found["box"]
        truth_x, truth_y, truth_w, truth_h = CROSSING_BOX
        overlap = max(0, min(x + w, truth_x + truth_w) - max(x, truth_x)) * max(0, min(y + h, truth_y + truth_h) - max(y, truth_y))
        assert overlap / (w * h + truth_w * truth_h - overlap) > 0.5, found
        status, answer = call(find, "POST", {"text": "a giraffe"})
        assert status == 422 and "no credible target for 'a giraffe'" in answer["error"]
        assert "draw the box" in answer["error"] and "--box" not in answer["error"]
        assert call(find, "POST", {"text": "  "})[0] == 400
        assert call(find, "POST", {"text": "x" * 301})[0] == 400


def test_two_sessions_at_once_never_mix_and_the_run_limit_is_a_429(shared_data: Path, clips: dict[str, Path]) -> None:
    with serving(LIMITS) as (base, app):
        (_, first), (_, second) = upload(base, clips["a"]), upload(base, clips["b"])
        assert first["id"] != second["id"]
        frames = [call(f"{base}/api/sessions/{s['id']}/first.jpg")[1] for s in (first, second)]
        assert frames[0] != frames[1]
        status, _ = call(f"{base}/api/sessions/{first['id']}/run", "POST", {"box": CROSSING_BOX, "wrap": True})
        assert status == 202
        status, answer = call(f"{base}/api/sessions/{second['id']}/run", "POST", {"box": [100, 100, 30, 60], "wrap": False})
        assert status == 429 and "the server is busy" in answer["error"] and "--max-running" in answer["error"]
        status, answer = call(f"{base}/api/sessions/{first['id']}/run", "POST", {"box": CROSSING_BOX})
        assert status in (409, 429)
        assert wait_end(base, first["id"])["end"]["state"] == "done"
        status, _ = call(f"{base}/api/sessions/{second['id']}/run", "POST", {"box": [100, 100, 30, 60], "wrap": False})
        assert status == 202
        end = wait_end(base, second["id"])["end"]
        assert end["state"] == "done" and end["files"] == ["base_boxes.txt", "track.json", "annotated.mp4"]
        first_boxes = call(f"{base}/api/sessions/{first['id']}/files/base_boxes.txt")[1]
        second_boxes = call(f"{base}/api/sessions/{second['id']}/files/base_boxes.txt")[1]
        first_row = [float(v) for v in first_boxes.decode().splitlines()[0].split(",")]
        second_row = [float(v) for v in second_boxes.decode().splitlines()[0].split(",")]
        assert first_row == CROSSING_BOX and second_row == [100, 100, 30, 60] and first_boxes != second_boxes
        assert call(f"{base}/api/sessions/{second['id']}/files/chattracker_boxes.txt")[0] == 404
        folders = sorted(p.name for p in app.state.manager.root.iterdir())
        assert folders == sorted([first["id"], second["id"]])


def test_a_stream_url_is_tracked_until_stopped(shared_data: Path) -> None:
    from tests.test_live_source import MjpegServer, crossing_jpegs

    with MjpegServer(crossing_jpegs(shared_data, 60), fps=30, after="loop") as stream, serving(LIMITS) as (base, app):
        status, session = call(f"{base}/api/sessions/stream", "POST", {"url": stream.url})
        assert status == 200 and session["stream"] and session["frames"] is None and session["width"] == 360
        status, _ = call(f"{base}/api/sessions/{session['id']}/run", "POST", {"box": CROSSING_BOX, "wrap": False})
        assert status == 202
        time.sleep(1.0)
        assert call(f"{base}/api/sessions/{session['id']}/stop", "POST")[0] == 200
        end = wait_end(base, session["id"])["end"]
        assert end["state"] == "stopped" and end["frames"] >= 2 and "track.json" in end["files"]
        status, answer = call(f"{base}/api/sessions/stream", "POST", {"url": stream.url.replace("stream.mjpg", "nothing")})
        assert status == 400 and "cannot be opened" in answer["error"]


def test_listening_beyond_loopback_is_said_and_a_taken_port_is_one_line() -> None:
    assert exposure_warning("127.0.0.1", 8000) is None and exposure_warning("localhost", 8000) is None
    assert exposure_warning("::1", 8000) is None
    warning = exposure_warning("0.0.0.0", 8000)
    assert warning.startswith("chattracker: warning: --host 0.0.0.0 is not a loopback address")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}"):
            check_port("127.0.0.1", taken.getsockname()[1])
