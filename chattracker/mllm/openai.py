"""Describer ``openai``: any OpenAI-compatible chat-completions server that takes images
(llama.cpp server, vLLM, Ollama, LM Studio, a cloud API).

The frame goes as a base64 JPEG data URL with the target box drawn on it. Standard library only
(http.client): timeouts, connection errors, replies cut short, 429 and 5xx are retried with exponential
backoff; other HTTP errors, oversized and unusable bodies fail at once with one line that says what the
server answered. ``timeout`` is a deadline for the whole request (a server trickling bytes cannot hold
it), enforced by closing the socket when it passes. Proxy variables are not used.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import cv2

from chattracker.config import Range, Why, check_settings
from chattracker.errors import ConfigError
from chattracker.mllm.base import register_describer
from chattracker.mllm.chat import ChatDescriber, ImageMaxSide
from chattracker.mllm.errors import DescriberUnavailableError, ReplyParseError
from chattracker.types import Frame
from chattracker_prompts import RenderedPrompt

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
READ_CHUNK = 64 * 1024


class _Retry(Exception):
    """A failure that may pass (timeout, reset, reply cut short, 429, 5xx); the message says which."""


def image_data_url(image: Frame, quality: int = 90) -> str:
    """RGB frame -> ``data:image/jpeg;base64,...`` (the form every OpenAI-compatible server accepts)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the frame as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _short(text: str, limit: int = 160) -> str:
    return " ".join(str(text).split())[:limit]


class OpenAIDescriber(ChatDescriber):
    """Chat-completions client: ``base_url`` ends before ``/chat/completions`` (e.g. ``http://host:8080/v1``)."""

    name = "openai"

    def __init__(self, model: str = "default", base_url: str = "http://127.0.0.1:8080/v1",
                 api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: Annotated[float, Range(0.0, 3600.0, low_open=True), Why(
                     "seconds to wait for one reply; a local server on CPU can take a minute")] = 60.0,
                 retries: Annotated[int, Range(0, 100), Why("tries after a failed request before giving up")] = 3,
                 backoff: Annotated[float, Range(0.0, 600.0), Why(
                     "seconds before the first retry, doubled each time (servers shed load when busy)")] = 1.0,
                 max_tokens: Annotated[int, Range(1, 100_000), Why(
                     "reply length at most; the JSON reply is about 60 tokens")] = 200,
                 temperature: Annotated[float, Range(0.0, 2.0), Why(
                     "0: the same frame gives the same description (cached and reproducible); the API allows 0..2")] = 0.0,
                 extra_body: dict[str, Any] | None = None, prompts_dir: str | Path | None = None,
                 image_max_side: ImageMaxSide = 1024, ask_background: bool = True,
                 max_reply_bytes: Annotated[int, Range(1, None), Why(
                     "a reply larger than this is refused unread: a misconfigured server must not fill memory")
                 ] = 16 * 2**20) -> None:
        super().__init__(prompts_dir=prompts_dir, image_max_side=image_max_side, ask_background=ask_background)
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"openai describer: base_url must be http(s)://host[:port][/path], got {base_url!r}")
        port = parsed.netloc.rpartition("]")[2].rpartition(":")[2] if ":" in parsed.netloc.rpartition("]")[2] else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"openai describer: base_url {base_url!r} has port {port!r}; a port is a number "
                              "from 1 to 65535")
        if timeout <= 0 or retries < 0 or backoff < 0 or max_tokens < 1 or max_reply_bytes < 1:
            raise ConfigError("openai describer: timeout and max_reply_bytes must be > 0, retries and backoff >= 0, "
                              "max_tokens >= 1")
        self.max_reply_bytes = int(max_reply_bytes)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.extra_body = dict(extra_body or {})

    def _backend_identity(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "extra_body": self.extra_body}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _chat(self, prompt: RenderedPrompt, image: Frame) -> str:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": [{"type": "text", "text": prompt.user},
                                             {"type": "image_url", "image_url": {"url": image_data_url(image)}}]},
            ],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            **self.extra_body,
        }
        payload = self._post(json.dumps(body).encode("utf-8"))
        return self._content(payload)

    def _post(self, data: bytes) -> bytes:
        """POST with retries on what may pass (timeouts, refused connections, replies cut short, 429, 5xx)."""
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(MAX_BACKOFF_S, self.backoff * 2 ** (attempt - 1))
                logger.info("openai describer: %s; retry %d/%d in %.2fs", last, attempt, self.retries, delay)
                time.sleep(delay)
            try:
                return self._request(data)
            except _Retry as error:
                last = str(error)
        raise DescriberUnavailableError(f"openai describer: {self.url}: {last} (after {attempts} attempt"
                                        f"{'s' if attempts != 1 else ''})")

    def _request(self, data: bytes) -> bytes:
        """One POST under a deadline of ``timeout`` seconds for connect, send and the whole reply."""
        parsed = urlparse(self.url)
        connection_class = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parsed.hostname, parsed.port, timeout=self.timeout)
        expired = threading.Event()
        sockets: list[socket.socket] = []  # the response may take the socket over from the connection

        def expire() -> None:
            expired.set()
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read at once
                except OSError:
                    pass

        deadline = threading.Timer(self.timeout, expire)
        deadline.daemon = True
        deadline.start()
        try:
            path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
            connection.connect()  # bounded by the socket timeout, which is the deadline too
            sockets.append(connection.sock)
            if expired.is_set():
                raise TimeoutError()
            connection.request("POST", path, body=data, headers=self._headers())
            response = connection.getresponse()
            body = self._read_capped(response)
        except http.client.IncompleteRead as error:
            if expired.is_set():
                raise _Retry(f"no complete answer within {self.timeout:g}s") from None
            raise _Retry(f"reply cut short ({len(error.partial)} bytes of "
                         f"{len(error.partial) + (error.expected or 0)})") from None
        except (TimeoutError, socket.timeout):
            raise _Retry(f"no answer within {self.timeout:g}s") from None
        except (ConnectionError, http.client.HTTPException) as error:
            if expired.is_set():
                raise _Retry(f"no complete answer within {self.timeout:g}s") from None
            if isinstance(error, ConnectionRefusedError):
                raise _Retry(f"cannot connect ({error.strerror or error})") from None
            raise _Retry(f"connection failed ({getattr(error, 'strerror', None) or error or type(error).__name__})") from None
        except OSError as error:  # name resolution, unreachable network
            if expired.is_set():
                raise _Retry(f"no complete answer within {self.timeout:g}s") from None
            raise _Retry(f"cannot connect ({error.strerror or error})") from None
        finally:
            deadline.cancel()
            connection.close()
        if response.status == 429 or response.status >= 500:
            raise _Retry(self._status_text(response, body))
        if response.status >= 400:
            hint = f" (is ${self.api_key_env} set?)" if response.status in (401, 403) and self.api_key_env else ""
            raise DescriberUnavailableError(f"openai describer: {self.url} answered "
                                            f"{self._status_text(response, body)}{hint}")
        return body

    def _read_capped(self, response: http.client.HTTPResponse) -> bytes:
        """The body, refused once it passes ``max_reply_bytes`` (a chat completion is a few kB)."""
        announced = response.getheader("Content-Length")
        if announced and announced.isdigit() and int(announced) > self.max_reply_bytes:
            raise DescriberUnavailableError(f"openai describer: {self.url} announced a {int(announced)}-byte reply, "
                                            f"more than max_reply_bytes {self.max_reply_bytes}")
        chunks, size = [], 0
        while chunk := response.read1(READ_CHUNK):
            size += len(chunk)
            if size > self.max_reply_bytes:
                raise DescriberUnavailableError(f"openai describer: {self.url} sent more than max_reply_bytes "
                                                f"{self.max_reply_bytes} bytes")
            chunks.append(chunk)
        if response.length:  # the server closed before Content-Length bytes came
            raise http.client.IncompleteRead(b"".join(chunks), response.length)
        return b"".join(chunks)

    @staticmethod
    def _status_text(response: http.client.HTTPResponse, body: bytes) -> str:
        detail = _short(body.decode("utf-8", "replace"))
        return f"HTTP {response.status} {response.reason}" + (f": {detail}" if detail else "")

    def _content(self, payload: bytes) -> str:
        """The assistant's text out of a chat-completion body; anything else is an unusable reply."""
        text = payload.decode("utf-8", "replace")
        try:
            body = json.loads(text)
            message = body["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ReplyParseError(f"openai describer: the server's answer is not a chat completion: {_short(text)!r}",
                                  reply=text) from None
        if isinstance(content, list):  # some servers return content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise ReplyParseError("openai describer: the chat completion has no text content", reply=text)
        return content


@register_describer("openai")
def build_openai(**params: Any) -> OpenAIDescriber:
    return OpenAIDescriber(**check_settings("describer openai", params, OpenAIDescriber))
