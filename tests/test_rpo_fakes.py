"""Small deterministic stand-ins for a grounder and describers, to test the RPO loop's logic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chattracker.mllm.base import Feedback
from chattracker.mllm.chat import ChatDescriber
from chattracker.types import Box, Description, Proposals


@dataclass
class SceneObject:
    box: tuple[float, float, float, float]
    words: set[str]


class WordGrounder:
    """Finds every object sharing a word with the phrase; score = share of the phrase's words it has."""

    name = "words"

    def __init__(self, objects: list[SceneObject], with_word_scores: bool = True) -> None:
        self.objects = objects
        self.with_word_scores = with_word_scores
        self.calls: list[list[str]] = []
        self.identity = {"grounder": "words", "objects": [(o.box, sorted(o.words)) for o in objects]}

    def ground(self, image, phrases):
        self.calls.append(list(phrases))
        boxes, scores, labels, rows = [], [], [], []
        for phrase in phrases:
            words = phrase.lower().split()
            for obj in self.objects:
                hits = [1.0 if w in obj.words else 0.0 for w in words]
                if any(hits):
                    boxes.append(obj.box)
                    scores.append(sum(hits) / len(words))
                    labels.append(phrase)
                    rows.append((phrase, hits))
        token_scores = None
        if self.with_word_scores:
            token_scores = {}
            for phrase in phrases:
                words = phrase.split()
                matrix = np.zeros((len(boxes), len(words)))
                for i, (label, hits) in enumerate(rows):
                    if label == phrase:
                        # earlier words weigh a little more so the best word is unique
                        matrix[i] = np.array(hits) * np.linspace(1.0, 0.9, len(words))
                token_scores[phrase] = (words, matrix)
        return Proposals(np.array(boxes).reshape(-1, 4), np.array(scores), labels, token_scores)


class ScriptedDescriber:
    """Returns the scripted descriptions (or raises the scripted errors) in order; keeps the feedback."""

    name = "scripted"
    identity = {"describer": "scripted"}  # the script is state, not identity

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.feedbacks: list[Feedback | None] = []

    def describe(self, image, box, feedback=None):
        self.feedbacks.append(feedback)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item if isinstance(item, Description) else Description(item, "tree. car")


class ScriptedChat(ChatDescriber):
    """A real ChatDescriber (prompts, parsing, trace) whose 'model' replies from a script."""

    name = "scripted_chat"

    def __init__(self, replies: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.replies = list(replies)
        self.images = []

    def _chat(self, prompt, image):
        self.images.append(image)
        return self.replies.pop(0)


TARGET = Box(100, 100, 40, 80)
SCENE = [SceneObject((100, 100, 40, 80), {"person", "red", "coat", "left"}),
         SceneObject((300, 100, 40, 80), {"person", "blue", "coat", "right"}),
         SceneObject((200, 300, 120, 60), {"car", "blue"})]


def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
