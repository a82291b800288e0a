"""Read a foreground phrase and a background list out of untrusted model text.

The prompts ask for ``{"foreground": "...", "background": ["...", ...]}``. Models wrap it in code
fences, add chatter before or after, answer in ``key: value`` lines, or just quote a phrase; each of
those is accepted, in that order of trust. Anything else raises ``ReplyParseError`` with the reply
attached so the caller can record it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from chattracker.mllm.errors import ReplyParseError

FOREGROUND_KEYS = ("foreground", "target", "description", "phrase", "referring_phrase", "referring expression")
BACKGROUND_KEYS = ("background", "distractors", "background_objects", "others", "objects")
MAX_PHRASE_CHARS = 160
MAX_BACKGROUND_ITEMS = 12

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)
_KEY_LINE = re.compile(r"^\s*[-*#>\s]*\**\"?([A-Za-z _]+?)\"?\**\s*[:=]\s*(.+?)\s*,?\s*$")
_QUOTED = re.compile(r"\"([^\"\n]{2,160})\"|“([^”\n]{2,160})”")


@dataclass
class ParsedReply:
    foreground: str | None
    background: list[str]
    method: str  # which rule read it: json, key_lines, quoted

    @property
    def background_text(self) -> str:
        """The dot-separated form grounders take ("tree. car. person")."""
        return ". ".join(self.background)


def clean_phrase(text: object) -> str | None:
    """A usable phrase or None: one line, has letters, not too long, no wrapping quotes or final dot."""
    if not isinstance(text, str):
        return None
    phrase = " ".join(text.split()).strip(" \"'`*.,;:“”")
    if not phrase or not re.search(r"[A-Za-z]", phrase) or len(phrase) > MAX_PHRASE_CHARS:
        return None
    if phrase.lower() in {"...", "none", "null", "n/a", "unknown"}:
        return None
    return phrase


def clean_background(value: object) -> list[str]:
    """A list or a "a. b, c" string of nouns -> cleaned, de-duplicated phrases (order kept)."""
    if isinstance(value, str):
        items: list[object] = re.split(r"[.;,\n]", value)
    elif isinstance(value, list):
        items = value
    else:
        return []
    out: list[str] = []
    for item in items:
        phrase = clean_phrase(item)
        if phrase and phrase.lower() not in {p.lower() for p in out}:
            out.append(phrase)
    return out[:MAX_BACKGROUND_ITEMS]


def _json_objects(text: str) -> list[dict]:
    """Every JSON object that starts somewhere in ``text`` (so chatter around it does not matter)."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _lookup(mapping: dict, keys: tuple[str, ...]) -> object:
    lowered = {str(k).strip().lower().replace(" ", "_"): v for k, v in mapping.items()}
    for key in keys:
        key = key.replace(" ", "_")
        if key in lowered:
            return lowered[key]
    return None


def _from_json(text: str) -> ParsedReply | None:
    for obj in _json_objects(text):
        foreground = clean_phrase(_lookup(obj, FOREGROUND_KEYS))
        background = clean_background(_lookup(obj, BACKGROUND_KEYS))
        if foreground or background:
            return ParsedReply(foreground, background, "json")
    return None


def _from_key_lines(text: str) -> ParsedReply | None:
    pairs = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match:
            pairs.setdefault(match.group(1).strip().lower(), match.group(2))
    foreground = clean_phrase(_lookup(pairs, FOREGROUND_KEYS))
    raw_background = _lookup(pairs, BACKGROUND_KEYS)
    if isinstance(raw_background, str) and raw_background.lstrip().startswith("["):
        try:
            raw_background = json.loads(raw_background)
        except json.JSONDecodeError:
            raw_background = raw_background.strip("[]")
    background = clean_background(raw_background)
    return ParsedReply(foreground, background, "key_lines") if foreground or background else None


def _from_quoted(text: str) -> ParsedReply | None:
    for match in _QUOTED.finditer(text):
        phrase = clean_phrase(match.group(1) or match.group(2))
        if phrase and phrase.lower() not in FOREGROUND_KEYS + BACKGROUND_KEYS:
            return ParsedReply(phrase, [], "quoted")
    return None


def parse_reply(text: str | None) -> ParsedReply:
    """The description in a model reply; ``ReplyParseError`` when nothing usable is in it."""
    if not text or not text.strip():
        raise ReplyParseError("the model returned an empty reply", reply=text or "")
    fenced = [m.group(1) for m in _FENCE.finditer(text)]
    for candidate in [*fenced, text]:
        for rule in (_from_json, _from_key_lines):
            parsed = rule(candidate)
            if parsed:
                return parsed
    parsed = _from_quoted(text)
    if parsed:
        return parsed
    preview = " ".join(text.split())[:120]
    raise ReplyParseError(f"no usable description in the model reply (no JSON, no 'foreground:' line, "
                          f"no quoted phrase): {preview!r}", reply=text)
