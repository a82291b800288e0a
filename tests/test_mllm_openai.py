"""The openai describer against a real HTTP server on 127.0.0.1 started by the test."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from chattracker.errors import ConfigError
from chattracker.mllm.openai import build_openai
from chattracker.mllm.errors import DescriberUnavailableError, ReplyParseError
from chattracker.rpo import RPOConfig, run_rpo
from chattracker.types import Box
from tests.test_rpo_fakes import SCENE, TARGET, WordGrounder, image


def completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


GOOD = completion('{"foreground": "person in a red coat", "background": ["car", "person"]}')


class ChatServer:
    """Answers POST /v1/chat/completions from a script of actions; records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[str, object]] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                kind, value = server.script.pop(0) if server.script else ("json", GOOD)
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = "json", GOOD
                if kind == "trickle":  # a byte every `value` seconds, never finishing in time
                    payload = json.dumps(GOOD).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    try:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(value)
                    except OSError:  # the client gave up: expected
                        pass
                    return
                if kind == "short":  # fewer bytes than Content-Length, then close
                    payload = json.dumps(GOOD).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload) + 100))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                if kind == "big":  # an endless body without Content-Length
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for _ in range(value):
                            self.wfile.write(b" " * 2**16)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if kind == "status":
                    self.send_response(value)
                    self.end_headers()
                    self.wfile.write(b'{"error": "overloaded"}')
                    return
                payload = json.dumps(value).encode() if kind == "json" else value
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def shared_server():
    chat = ChatServer()
    yield chat
    chat.close()


@pytest.fixture
def server(shared_server):
    shared_server.script, shared_server.requests = [], []
    return shared_server


def describer(url: str, **params):
    settings = {"model": "tiny-vlm", "base_url": url, "timeout": 2.0, "retries": 2, "backoff": 0.01, **params}
    return build_openai(**settings)  # the factory registered as "openai"


def test_good_reply_sends_the_image_with_the_box_and_the_key(server, monkeypatch):
    monkeypatch.setenv("TEST_VLM_KEY", "sk-test")
    frame = np.full((240, 320, 3), 40, np.uint8)
    result = describer(server.url, api_key_env="TEST_VLM_KEY").describe(frame, Box(100, 50, 60, 80))
    assert result.foreground == "person in a red coat" and result.background == "car. person"
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"]["model"] == "tiny-vlm" and request["body"]["messages"][0]["role"] == "system"
    text, picture = request["body"]["messages"][1]["content"]
    assert "x, y, w, h = 100, 50, 60, 80" in text["text"]
    url = picture["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert sent.shape == (240, 320, 3)
    assert sent[50, 130, 1] > 200 and sent[50, 130, 2] < 80  # the green box edge (BGR after decoding)
    assert sent[120, 20, 1] < 80  # the rest is untouched


def test_timeout_then_success(server, caplog):
    # The timeout leaves the immediate second answer room on a loaded 2-core machine (0.3 s once came
    # too late there, which made a second retry).
    server.script = [("sleep", 2.5)]
    with caplog.at_level(logging.INFO, logger="chattracker.mllm.openai"):
        result = describer(server.url, timeout=1.0).describe(image(), TARGET)
    assert result.foreground == "person in a red coat" and len(server.requests) == 2
    # one retry, because of the timeout: the slow answer was given up on, not waited for
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1 and retries[0].startswith("openai describer: no complete answer within 1s; retry 1/2")


def test_500s_then_success_with_backoff(server):
    server.script = [("status", 500), ("status", 503)]
    result = describer(server.url).describe(image(), TARGET)
    assert result.foreground == "person in a red coat" and len(server.requests) == 3


def test_persistent_500s_and_client_errors_are_one_clear_line(server):
    server.script = [("status", 500)] * 3
    with pytest.raises(DescriberUnavailableError, match=r"HTTP 500 .*after 3 attempts") as caught:
        describer(server.url).describe(image(), TARGET)
    assert "\n" not in str(caught.value)
    server.script = [("status", 401)]
    with pytest.raises(DescriberUnavailableError, match=r"answered HTTP 401.*OPENAI_API_KEY"):
        describer(server.url).describe(image(), TARGET)
    assert len(server.requests) == 4  # 401 is not retried


@pytest.mark.parametrize("action, match", [
    (("raw", b"<html>bad gateway</html>"), "not a chat completion"),
    (("json", {"choices": []}), "not a chat completion"),
    (("json", completion("I cannot help with that.")), "no usable description"),
])
def test_garbage_replies_are_unusable_replies(server, action, match):
    server.script = [action]
    with pytest.raises(ReplyParseError, match=match):
        describer(server.url).describe(image(), TARGET)


def test_unreachable_server_is_one_clear_line():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DescriberUnavailableError) as caught:
        describer(f"http://127.0.0.1:{port}/v1", retries=1).describe(image(), TARGET)
    message = str(caught.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "cannot connect" in message
    assert "after 2 attempts" in message


def test_rpo_over_http_records_garbage_and_keeps_the_good_description(server):
    server.script = [("json", completion('{"foreground": "blue person"}')), ("json", completion('{"background": ["car"]}')),
                     ("json", completion("%%% ??? ###")), ("json", completion('Answer: {"foreground": "red person", "background": "car"}'))]
    result = run_rpo(image(), TARGET, describer(server.url), WordGrounder(SCENE), RPOConfig(iterations=3))
    rounds = result.trace["rounds"]
    assert [r["source"] for r in rounds] == ["describer"] * 3
    assert rounds[1]["error"].startswith("ReplyParseError") and rounds[1]["exchanges"][0]["reply"] == "%%% ??? ###"
    assert result.description.foreground == "red person" and result.top1_iou == 1.0
    assert len(server.requests) == 4


def test_bad_settings():
    with pytest.raises(ConfigError, match="base_url"):
        describer("localhost:8080")
    with pytest.raises(ConfigError, match="timeout"):
        describer("http://127.0.0.1:1/v1", timeout=0)
    with pytest.raises(ConfigError, match=r"describer openai.max_tokens must be an integer, got 'lots'"):
        describer("http://127.0.0.1:1/v1", max_tokens="lots")
    with pytest.raises(ConfigError, match=r"describer openai.retries must be an integer, got 2.5"):
        describer("http://127.0.0.1:1/v1", retries=2.5)
    with pytest.raises(ConfigError, match=r"describer openai.temperature must be a number, got True"):
        describer("http://127.0.0.1:1/v1", temperature=True)
    assert describer("http://127.0.0.1:1/v1", temperature=1).temperature == 1.0  # an int is a number


def test_timeout_is_a_deadline_for_a_trickling_server(server):
    """A server sending a byte every 0.2 s resets any per-read timeout; the deadline still ends the request."""
    server.script = [("trickle", 0.2)] * 2
    start = time.perf_counter()
    with pytest.raises(DescriberUnavailableError, match=r"no complete answer within 0.5s \(after 2 attempts\)"):
        describer(server.url, timeout=0.5, retries=1).describe(image(), TARGET)
    assert time.perf_counter() - start < 10  # the body alone would take 20 s per attempt


def test_reply_shorter_than_its_length_is_retried(server):
    server.script = [("short", None)]
    result = describer(server.url).describe(image(), TARGET)
    assert result.foreground == "person in a red coat" and len(server.requests) == 2
    server.script = [("short", None)] * 3
    with pytest.raises(DescriberUnavailableError, match=r"reply cut short .*after 3 attempts"):
        describer(server.url).describe(image(), TARGET)


def test_oversized_reply_is_refused_not_held_in_memory(server):
    server.script = [("big", 64)]  # 4 MiB of blanks
    with pytest.raises(DescriberUnavailableError, match=r"more than max_reply_bytes 1048576 bytes"):
        describer(server.url, max_reply_bytes=2**20).describe(image(), TARGET)
    assert len(server.requests) == 1  # not retried: the same server would send it again
