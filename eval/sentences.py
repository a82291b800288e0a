"""Sentences from a file in place of (or in addition to) a dataset's own: the user's, or audited rewrites."""

from __future__ import annotations

import dataclasses

from chattracker.config import load_yaml
from chattracker.errors import InputError
from chattracker_eval.datasets.base import SequenceList


def load_sentences(path: str) -> dict[str, str]:
    """A YAML mapping sequence name -> sentence (one line error for anything else)."""
    data = load_yaml(path)
    bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise InputError(f"{path}: every entry must be 'sequence: sentence'; not a sentence for {', '.join(map(str, bad[:5]))}")
    return {str(k): " ".join(v.split()) for k, v in data.items()}


def with_sentences(sequences: SequenceList, path: str, known: list[str]) -> SequenceList:
    """The sequences with the file's sentences in place of their own; names the dataset lacks are an error."""
    sentences = load_sentences(path)
    unknown = sorted(set(sentences) - set(known))
    if unknown:
        raise InputError(f"{path}: the dataset has no sequence {', '.join(unknown[:5])}")
    return type(sequences)(dataclasses.replace(s, language=sentences.get(s.name, s.language)) for s in sequences)
