"""Errors of the chat describers (hf, openai); RPO records them in its trace."""

from __future__ import annotations

from chattracker.errors import ChatTrackerError


class DescriberError(ChatTrackerError):
    """A describer call that produced no usable description."""

    def __init__(self, message: str, *, reply: str | None = None, prompt: dict | None = None) -> None:
        super().__init__(message)
        self.reply = reply
        self.prompt = prompt


class ReplyParseError(DescriberError):
    """The model answered, but nothing usable could be read from its reply."""


class DescriberUnavailableError(DescriberError):
    """The backend could not be reached or refused the request (after retries)."""
