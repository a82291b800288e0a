"""Round-by-round batching of chat calls for many concurrent RPO runs (one per benchmark sequence).

Each run gets a *view* of one chat describer: the same model, its own exchange record. A view's chat call waits
until every run still going is waiting on one too, then they all go to the backend's ``chat_batch`` as one batch.
So the MLLM calls of a round leave together, and on the offload engine each expert read serves the whole group.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from chattracker.types import Frame
from chattracker_prompts import RenderedPrompt


def can_batch(describer: Any) -> bool:
    """Describers with a ``chat_batch`` (the hf backend) are batched; others are asked one call at a time."""
    return callable(getattr(describer, "chat_batch", None)) and callable(getattr(describer, "_chat", None))


class RoundBatcher:
    """Gathers the pending chat calls of ``runs`` concurrent runs; the last one to arrive sends the batch."""

    def __init__(self, describer: Any, runs: int) -> None:
        if not can_batch(describer):
            raise TypeError(f"{type(describer).__name__} has no chat_batch")
        self.describer, self.live = describer, runs
        self.pending: list[dict[str, Any]] = []
        self.batches: list[int] = []  # size of every batch sent, in order
        self.cond = threading.Condition()

    def view(self) -> Any:
        """A shallow copy of the describer for one run: shares the model, keeps its own last exchanges."""
        view = copy.copy(self.describer)
        view.last_exchanges = []
        view._chat = lambda prompt, image: self._call(view, prompt, image)  # noqa: E731 - instance override
        return view

    def finished(self) -> None:
        """One run ended (done or failed): the others no longer wait for it."""
        with self.cond:
            self.live -= 1
            batch = self._take()
        if batch:
            self._send(batch)

    def _call(self, view: Any, prompt: RenderedPrompt, image: Frame) -> str:
        slot: dict[str, Any] = {"prompt": prompt, "image": image}
        with self.cond:
            self.pending.append(slot)
            batch = self._take()
        if batch:
            self._send(batch)
        with self.cond:
            self.cond.wait_for(lambda: "reply" in slot or "error" in slot)
        if "error" in slot:
            raise slot["error"]
        view._last_info = slot["info"]
        return slot["reply"]

    def _take(self) -> list[dict[str, Any]]:
        if self.pending and len(self.pending) >= self.live:
            batch, self.pending = self.pending, []
            self.batches.append(len(batch))
            return batch
        return []

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            replies = self.describer.chat_batch([(slot["prompt"], slot["image"]) for slot in batch])
        except BaseException as error:  # every run of the batch gets the error (RPO records it per round)
            with self.cond:
                for slot in batch:
                    slot["error"] = error
                self.cond.notify_all()
            return
        with self.cond:
            for slot, (reply, info) in zip(batch, replies):
                slot["reply"], slot["info"] = reply, info
            self.cond.notify_all()
