"""Describer protocol and registry (DESIGN.md section 3).

A describer looks at a frame with the target box and writes a ``Description``: a foreground phrase
that picks out the target and a background noun list ("tree. car. person") of what surrounds it.
On later RPO rounds it gets ``Feedback``: which words found the target and which found other objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from chattracker.registry import Registry
from chattracker.types import Box, Description, Frame


@dataclass
class Attempt:
    """One earlier RPO round: the description tried and how well its best grounding hit the target."""

    foreground: str
    background: str
    top1_iou: float


@dataclass
class Feedback:
    """What the grounder did with the last description (input to the reflection prompt)."""

    positive_words: list[str] = field(default_factory=list)  # words whose boxes overlapped the target
    negative_words: list[str] = field(default_factory=list)  # words whose boxes found other objects
    history: list[Attempt] = field(default_factory=list)  # earlier attempts, oldest first
    initial_text: str | None = None  # a user's or dataset's description to start from, if any


@runtime_checkable
class Describer(Protocol):
    """Writes the target's description from a frame with its box; ``feedback`` carries RPO's positive and
    negative words from earlier rounds. Model output is untrusted: a describer never crashes on it."""

    name: str

    def describe(self, image: Frame, box: Box, feedback: Feedback | None = None) -> Description: ...


DESCRIBERS: Registry[Describer] = Registry(
    "describer", builtin_modules=("chattracker.mllm.attributes", "chattracker.mllm.hf", "chattracker.mllm.openai"))
register_describer = DESCRIBERS.register
build_describer = DESCRIBERS.build
