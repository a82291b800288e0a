"""Prompt templates for the describers, kept as files so they can be read and changed without code.

Each ``<name>.yaml`` has ``placeholders`` (the ``{names}`` its text uses), ``system`` and ``user``.
Literal braces are doubled (``{{`` ``}}``), as in ``str.format``. ``load_prompt`` checks that the
declared placeholders are exactly the ones the text uses, and ``render`` fails naming the prompt and
the missing value instead of sending a half-filled prompt to a model.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chattracker.errors import ChatTrackerError

PROMPTS_DIR = Path(__file__).resolve().parent


class PromptError(ChatTrackerError):
    """A prompt file that is missing or malformed, or a render without all its values."""


@dataclass(frozen=True)
class RenderedPrompt:
    name: str
    system: str
    user: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "system": self.system, "user": self.user}


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    placeholders: tuple[str, ...]
    system: str
    user: str

    @property
    def digest(self) -> str:
        """Short hash of the text: part of a describer's identity, so a changed prompt misses the RPO cache."""
        return hashlib.sha256((self.system + "\0" + self.user).encode()).hexdigest()[:12]

    def render(self, **values: Any) -> RenderedPrompt:
        missing = [p for p in self.placeholders if p not in values]
        if missing:
            raise PromptError(f"prompt {self.name!r} ({self.path}) needs {', '.join(missing)}")
        unknown = sorted(set(values) - set(self.placeholders))
        if unknown:
            raise PromptError(f"prompt {self.name!r} ({self.path}) takes no {', '.join(unknown)}; "
                              f"it takes {', '.join(self.placeholders)}")
        text = {k: str(v) for k, v in values.items()}
        return RenderedPrompt(self.name, self.system.format(**text).strip(), self.user.format(**text).strip())


def _fields(text: str, where: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError as error:
        raise PromptError(f"{where}: bad braces ({error}); write literal braces as {{{{ and }}}}") from None


def load_prompt(name: str, folder: str | Path | None = None) -> PromptTemplate:
    """Load ``<folder>/<name>.yaml`` (default: the packaged prompts) and check its placeholders."""
    path = Path(folder or PROMPTS_DIR) / f"{name}.yaml"
    if not path.is_file():
        raise PromptError(f"prompt file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PromptError(f"{path}: malformed YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("system", "user")):
        raise PromptError(f"{path}: needs text keys 'system' and 'user'")
    declared = data.get("placeholders") or []
    if not isinstance(declared, list) or not all(isinstance(p, str) for p in declared):
        raise PromptError(f"{path}: 'placeholders' must be a list of names")
    used = _fields(data["system"], str(path)) | _fields(data["user"], str(path))
    bad = [f for f in used if not f.isidentifier()]
    if bad:
        raise PromptError(f"{path}: placeholders must be plain names, got {', '.join(sorted(bad))}")
    if used != set(declared):
        raise PromptError(f"{path}: declared placeholders {sorted(declared)} but the text uses {sorted(used)}")
    return PromptTemplate(name, path, tuple(declared), data["system"], data["user"])
