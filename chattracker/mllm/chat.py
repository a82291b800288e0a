"""What the chat describers (hf, openai) share: the image they see, the prompt they get, and the
parsing of what they answer. A backend only implements ``_chat(prompt, image) -> reply text``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np

from chattracker.config import Range, Why
from chattracker.mllm.base import Feedback
from chattracker.mllm.errors import DescriberError, ReplyParseError
from chattracker.mllm.parsing import clean_background, parse_reply
from chattracker.types import Box, Description, Frame
from chattracker_prompts import PromptTemplate, RenderedPrompt, load_prompt

logger = logging.getLogger(__name__)

TARGET_COLOR_RGB = (0, 255, 0)
TARGET_COLOR_NAME = "green"


def fit_image(image: Frame, box: Box, max_side: int | None) -> tuple[Frame, Box]:
    """Downscale so the longer side is at most ``max_side`` (large frames cost tokens, not accuracy)."""
    height, width = image.shape[:2]
    scale = 1.0 if not max_side else min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return image, box
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized, Box(box.x * scale, box.y * scale, box.w * scale, box.h * scale)


def draw_target(image: Frame, box: Box, color: tuple[int, int, int] = TARGET_COLOR_RGB) -> Frame:
    """A copy of the RGB frame with the target rectangle drawn on it (what the model is asked about)."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(2, round(max(image.shape[:2]) / 250))
    x1, y1, x2, y2 = (int(round(v)) for v in box.to_xyxy())
    cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    return canvas


def format_box(box: Box) -> str:
    return ", ".join(str(int(round(v))) for v in box.to_list())


def format_attempts(feedback: Feedback) -> str:
    if not feedback.history:
        return "none yet"
    return "\n".join(f"{i}. \"{a.foreground}\" -> best box overlap {a.top1_iou:.2f}"
                     for i, a in enumerate(feedback.history, 1))


def format_words(words: list[str]) -> str:
    return ", ".join(words) if words else "none"


# Shared by the chat describers (openai, hf): declared once so both check it the same way.
ImageMaxSide = Annotated[int | None, Range(32, 8192), Why(
    "the frame is shrunk so its longer side is at most this many pixels before it is sent (null: as is); "
    "vision encoders tile large images, and a smaller picture is faster with the boxed target still plain")]

class ChatDescriber:
    """Base of describers that talk to a chat model with one image. Subclasses set ``name`` and
    implement ``_chat``; each call's prompts and replies are kept in ``last_exchanges`` for the trace."""

    name = "chat"

    def __init__(self, prompts_dir: str | Path | None = None, image_max_side: int | None = 1024,
                 ask_background: bool = True) -> None:
        self.prompts: dict[str, PromptTemplate] = {
            key: load_prompt(key, prompts_dir) for key in ("describe", "reflect", "background")}
        self.image_max_side = image_max_side
        self.ask_background = ask_background
        self.last_exchanges: list[dict[str, Any]] = []

    # --- what a backend implements -------------------------------------------------------------
    def _chat(self, prompt: RenderedPrompt, image: Frame) -> str:
        raise NotImplementedError

    def _backend_identity(self) -> dict[str, Any]:
        return {}

    def _exchange_info(self) -> dict[str, Any]:
        """Extra facts about the last call for the trace (e.g. timing, offload cache statistics)."""
        return {}

    # -------------------------------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        """What decides the answer (backend, model, prompts): the RPO cache key uses it."""
        return {"describer": self.name, **self._backend_identity(), "image_max_side": self.image_max_side,
                "prompts": {k: p.digest for k, p in self.prompts.items()}}

    def build_prompt(self, size: tuple[int, int], box: Box, feedback: Feedback | None) -> RenderedPrompt:
        width, height = size
        common = {"box": format_box(box), "width": width, "height": height, "color": TARGET_COLOR_NAME}
        if feedback is None or (not feedback.history and not feedback.initial_text):
            return self.prompts["describe"].render(**common)
        return self.prompts["reflect"].render(
            **common, attempts=format_attempts(feedback), positive_words=format_words(feedback.positive_words),
            negative_words=format_words(feedback.negative_words),
            initial_text=f"\"{feedback.initial_text}\"" if feedback.initial_text else "none")

    def _exchange(self, prompt: RenderedPrompt, image: Frame) -> str:
        record: dict[str, Any] = {"prompt": prompt.to_dict(), "reply": None}
        self.last_exchanges.append(record)
        try:
            reply = self._chat(prompt, image)
        except DescriberError as error:
            error.prompt = prompt.to_dict()
            record["error"] = str(error)
            raise
        record["reply"] = reply
        record.update(self._exchange_info())
        return reply

    def describe(self, image: Frame, box: Box, feedback: Feedback | None = None) -> Description:
        """One description; ``ReplyParseError`` (with the reply) when nothing usable came back."""
        self.last_exchanges = []
        box = Box.from_any(box)
        shown, shown_box = fit_image(draw_target(image, box), box, self.image_max_side)
        prompt = self.build_prompt((shown.shape[1], shown.shape[0]), shown_box, feedback)
        reply = self._exchange(prompt, shown)
        try:
            parsed = parse_reply(reply)
        except ReplyParseError as error:
            error.prompt = prompt.to_dict()
            self.last_exchanges[-1]["error"] = str(error)
            raise
        if not parsed.foreground:
            message = "the model reply has a background list but no foreground phrase"
            self.last_exchanges[-1]["error"] = message
            raise ReplyParseError(message, reply=reply, prompt=prompt.to_dict())
        background = parsed.background
        if not background and self.ask_background:
            background = self._ask_background(parsed.foreground, shown)
        return Description(parsed.foreground, ". ".join(background), raw=reply)

    def _ask_background(self, foreground: str, image: Frame) -> list[str]:
        """A second, smaller question when the first reply listed no distractors; failure is not fatal."""
        prompt = self.prompts["background"].render(foreground=foreground, color=TARGET_COLOR_NAME)
        try:
            reply = self._exchange(prompt, image)
            parsed = parse_reply(reply)
        except DescriberError as error:
            self.last_exchanges[-1]["error"] = str(error)
            logger.info("%s describer: no background list (%s)", self.name, error)
            return []
        return clean_background(parsed.background) or []
