"""``chattracker trax`` driven by vot-trax's own client over pipes: memory and encoded images, polygon
initialisation, and a refused request that ends the session with its reason and one error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

trax = pytest.importorskip("trax")
from trax import TraxException  # noqa: E402
from trax.client import Client  # noqa: E402
from trax.image import BufferImage, MemoryImage  # noqa: E402
from trax.region import Polygon, Rectangle  # noqa: E402

from chattracker.builder import build_tracker_from_spec  # noqa: E402
from chattracker.types import Box  # noqa: E402
from chattracker.video import list_images, read_image  # noqa: E402

BIN = Path(sys.executable).parent


def start_server() -> tuple[subprocess.Popen, Client]:
    process = subprocess.Popen([str(BIN / "chattracker"), "trax", "--tracker", "csrt"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # vot-trax's client needs a log callback (log=False fails in its ctypes setup)
        return process, Client(stream=(process.stdin.fileno(), process.stdout.fileno()), timeout=60,
                               log=lambda message: None)
    except BaseException:
        process.kill()
        process.wait()
        raise


def stop(process: subprocess.Popen) -> str:
    try:
        process.stdin.close()  # a session cut short by a failed assertion ends here too
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.stderr.read().decode()


@pytest.mark.shared
def test_memory_and_buffer_images_with_a_polygon(shared_data: Path) -> None:
    files = list_images(shared_data / "vot15_bag" / "bag" / "imgs")[:8]
    frames = [read_image(f) for f in files]
    polygon = [float(v) for v in (shared_data / "vot15_bag" / "bag" / "groundtruth.txt").read_text().split("\n")[0].split(",")]
    points = list(zip(polygon[0::2], polygon[1::2]))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    first = Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    expected = build_tracker_from_spec("csrt")
    expected.initialize(frames[0], first)
    expected_boxes = [expected.track(frame).box.to_list() for frame in frames[1:]]

    process, client = start_server()
    try:
        assert client.tracker_name == "ChatTracker csrt"
        (region, properties), = client.initialize({"color": MemoryImage.create(frames[0])},
                                                  [(Polygon.create(points), {"text": "a plastic bag"})], {})[0]
        np.testing.assert_allclose(region.bounds(), first.to_list(), atol=1e-3)  # 32-bit floats on the wire
        boxes = []
        for frame in frames[1:]:
            png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
            (region, properties), = client.frame({"color": BufferImage.create(png)}, {}, [])[0]
            boxes.append(list(region.bounds()))
            assert 0.0 <= float(properties["confidence"]) <= 1.0
        client.quit()
    finally:
        stderr = stop(process)
    assert process.returncode == 0, stderr
    np.testing.assert_array_equal(np.array(boxes), np.array(expected_boxes))


def test_a_refused_request_ends_the_session_with_its_reason() -> None:
    broken_png = b"\x89PNG\r\n\x1a\n" + bytes(64)  # a PNG signature and nothing decodable after it
    process, client = start_server()
    try:
        with pytest.raises(TraxException, match="not a decodable JPEG/PNG"):
            client.initialize({"color": BufferImage.create(broken_png)}, [(Rectangle.create(1, 2, 10, 10), {})], {})
    finally:
        stderr = stop(process)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == ["chattracker: error: TraX image buffer is not a decodable JPEG/PNG"]
