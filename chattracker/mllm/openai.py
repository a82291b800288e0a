"""Describer ``openai``: any OpenAI-compatible chat-completions server that takes images
(llama.cpp server, vLLM, Ollama, LM Studio, a cloud API).

The frame goes as a base64 JPEG data URL with the target box drawn on it. Standard library only
(urllib): timeouts, connection errors, 429 and 5xx are retried with exponential backoff; other
HTTP errors and unusable bodies fail at once with one line that says what the server answered.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cv2

from chattracker.errors import ConfigError
from chattracker.mllm.base import register_describer
from chattracker.mllm.chat import ChatDescriber
from chattracker.mllm.errors import DescriberUnavailableError, ReplyParseError
from chattracker.types import Frame
from chattracker_prompts import RenderedPrompt

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


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
                 api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, max_tokens: int = 200, temperature: float = 0.0,
                 extra_body: dict[str, Any] | None = None, prompts_dir: str | Path | None = None,
                 image_max_side: int | None = 1024, ask_background: bool = True) -> None:
        super().__init__(prompts_dir=prompts_dir, image_max_side=image_max_side, ask_background=ask_background)
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"openai describer: base_url must be http(s)://host[:port][/path], got {base_url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ConfigError("openai describer: timeout must be > 0, retries and backoff >= 0")
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
        """POST with retries on what may pass (timeouts, refused connections, 429, 5xx)."""
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(MAX_BACKOFF_S, self.backoff * 2 ** (attempt - 1))
                logger.info("openai describer: %s; retry %d/%d in %.2fs", last, attempt, self.retries, delay)
                time.sleep(delay)
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as error:
                detail = _short(error.read().decode("utf-8", "replace")) if error.fp else ""
                last = f"HTTP {error.code} {error.reason}" + (f": {detail}" if detail else "")
                if error.code == 429 or error.code >= 500:
                    continue
                hint = f" (is ${self.api_key_env} set?)" if error.code in (401, 403) and self.api_key_env else ""
                raise DescriberUnavailableError(f"openai describer: {self.url} answered {last}{hint}") from None
            except (TimeoutError, socket.timeout):
                last = f"no answer within {self.timeout:g}s"
            except urllib.error.URLError as error:
                reason = error.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    last = f"no answer within {self.timeout:g}s"
                else:
                    last = f"cannot connect ({getattr(reason, 'strerror', None) or reason})"
            except (ConnectionError, OSError) as error:  # reset or closed mid-answer
                last = f"connection failed ({error.strerror or error})"
        raise DescriberUnavailableError(f"openai describer: {self.url}: {last} (after {attempts} attempt"
                                        f"{'s' if attempts != 1 else ''})")

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
    return OpenAIDescriber(**params)
