"""`chattracker serve` in a real browser: Debian's headless Chromium driven by selenium (no browser download)
against the real CLI server on 127.0.0.1. Uploads a clip of real frames, draws the box with mouse events,
runs base and ChatTracker side by side, checks the streamed frames, the scores and a download; then the bad
inputs, each a message on the page; then a stream run and a second tab refused while it goes on.

``CHATTRACKER_SCREENSHOT=docs/serve.png`` also writes the screenshot of the finished run there."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_live_source import MjpegServer, crossing_jpegs
from tests.test_serve_api import CROSSING_BOX, crossing_truth, make_clip

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser_or_skip():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        reason = (f"{' and '.join(missing)} missing: install Debian's chromium and chromium-driver packages "
                  "(.ci/run does)")
        if os.environ.get("CHATTRACKER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " but CHATTRACKER_REQUIRE_BROWSER=1 makes the browser test mandatory")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,1500", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``chattracker serve`` as a user starts it, on a free port of 127.0.0.1; always stopped."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "chattracker.cli", "serve", "--port", str(self.port), *options],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> "Server":
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.base + "/api/config", timeout=2):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise AssertionError(f"the server did not start: {self.process.stderr.read()}")
                time.sleep(0.2)

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output = self.process.communicate()
        folders = re.search(r"session folders under (\S+)\)", self.output[0])
        assert folders and not Path(folders.group(1)).exists(), f"session folders outlived the server: {self.output}"


def test_serve_in_headless_chromium(shared_data: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    clip = make_clip(shared_data, tmp_path / "crossing.mp4")
    other = make_clip(shared_data, tmp_path / "crossing_later.mp4", first=60)
    truth = tmp_path / "groundtruth.txt"
    truth.write_bytes(crossing_truth(shared_data))
    big = tmp_path / "big.mp4"
    big.write_bytes(clip.read_bytes() * 6)
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 50)
    driver = browser_or_skip()
    try:
        with Server("--max-upload-mb", "0.6", "--max-running", "1", "--stall-timeout", "5") as server, \
                MjpegServer(crossing_jpegs(shared_data, 60), fps=30, after="loop") as stream:
            wait = WebDriverWait(driver, 60)
            find = lambda id: driver.find_element(By.ID, id)  # noqa: E731

            def message(status: str, contains: str) -> None:
                wait.until(lambda d: find("message").get_attribute("data-status") == status
                           and contains in find("message").text)
                assert "error" in find("message").get_attribute("class")

            def draw_box(x: float, y: float, w: float, h: float) -> None:
                canvas = find("first-frame")  # shown at its natural 360x240: offsets are frame pixels
                left, top = -canvas.size["width"] / 2, -canvas.size["height"] / 2
                (ActionChains(driver).move_to_element_with_offset(canvas, int(left + x), int(top + y)).click_and_hold()
                 .move_by_offset(int(w / 2), int(h / 2)).move_by_offset(int(w - w // 2), int(h - h // 2)).release()
                 .perform())

            driver.get(server.base + "/")
            wait.until(lambda d: "nanotrack_v2" in [o.get_attribute("value") for o in Select(find("tracker")).options])
            # bad input first, each a message on the page; the same page goes on working after each
            find("video-file").send_keys(str(notes))
            message("415", "'notes.mp4' is not a video OpenCV can read")
            find("video-file").send_keys(str(big))
            message("413", "is larger than the upload limit")
            find("stream-url").send_keys("/etc/passwd")
            find("open-stream").click()
            message("400", "'/etc/passwd' is not a stream URL")
            find("stream-url").clear()

            find("video-file").send_keys(str(clip))
            wait.until(lambda d: find("target-step").is_displayed() and "360x240, 30 frames" in find("source-info").text)
            assert find("first-frame").size == {"width": 360, "height": 240}
            find("box").clear()
            find("box").send_keys("400,300,20,20\t")
            find("run").click()
            message("400", "is outside the 360x240 frame")
            find("text").send_keys("the person in black on the right")
            find("find").click()
            wait.until(lambda d: "language start:" in find("find-info").text)
            found = [float(v) for v in find("box").get_attribute("value").split(",")]
            assert abs(found[0] - CROSSING_BOX[0]) < 10 and abs(found[1] - CROSSING_BOX[1]) < 10, found
            draw_box(*CROSSING_BOX)
            drawn = [float(v) for v in find("box").get_attribute("value").split(",")]
            assert all(abs(a - b) <= 2 for a, b in zip(drawn, CROSSING_BOX)), drawn
            find("truth-file").send_keys(str(truth))
            wait.until(lambda d: "30 rows" in find("truth-info").text)
            assert find("wrap").is_selected()
            find("run").click()
            wait.until(lambda d: find("status").get_attribute("data-state") == "done")
            assert find("status").get_attribute("data-frame") == "30"
            for panel in ("panel-base", "panel-chattracker"):
                assert find(panel).get_attribute("src").startswith("data:image/jpeg;base64,/9j/")
                assert driver.execute_script("return arguments[0].naturalWidth", find(panel)) == 360
            assert "frame 1:" in find("descriptions").text
            scores = find("scores").text
            assert "AUC" in scores and "base" in scores and "chattracker" in scores
            assert "Done (done): 30 frames" in find("message").text
            screenshot = tmp_path / "serve.png"
            driver.save_screenshot(str(screenshot))
            assert screenshot.stat().st_size > 50_000
            if os.environ.get("CHATTRACKER_SCREENSHOT"):
                shutil.copyfile(screenshot, os.environ["CHATTRACKER_SCREENSHOT"])
            links = {a.text: a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")}
            assert set(links) == {"base_boxes.txt", "chattracker_boxes.txt", "track.json", "annotated.mp4"}
            with urllib.request.urlopen(links["chattracker_boxes.txt"], timeout=30) as response:
                rows = response.read().decode().split()
            assert len(rows) == 30 and [float(v) for v in rows[0].split(",")] == [float(v) for v in drawn]

            # a stream in this tab runs until stopped; a second tab's run meanwhile is refused (--max-running 1)
            find("stream-url").send_keys(stream.url)
            find("open-stream").click()
            wait.until(lambda d: "live" in find("source-info").text)
            draw_box(*CROSSING_BOX)
            find("wrap").click()
            find("run").click()
            wait.until(lambda d: int(find("status").get_attribute("data-frame") or 0) >= 3)
            first_tab = driver.current_window_handle
            driver.switch_to.new_window("tab")
            driver.get(server.base + "/")
            wait.until(lambda d: Select(find("tracker")).options)
            find("video-file").send_keys(str(other))
            wait.until(lambda d: find("target-step").is_displayed())
            draw_box(100, 100, 30, 60)
            find("run").click()
            message("429", "the server is busy")
            driver.close()
            driver.switch_to.window(first_tab)
            find("stop").click()
            wait.until(lambda d: find("status").get_attribute("data-state") == "stopped")
            assert "Done (stopped)" in find("message").text
    finally:
        driver.quit()
    assert server.process.returncode is not None


def test_without_the_browser_packages_the_test_skips_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.delenv("CHATTRACKER_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install Debian's chromium and chromium-driver packages"):
        browser_or_skip()
    monkeypatch.setenv("CHATTRACKER_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="makes the browser test mandatory"):
        browser_or_skip()
