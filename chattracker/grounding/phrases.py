"""Free text -> COCO classes: find the phrase's head noun and map it through synonyms and hypernyms.

The vocabulary is data (``chattracker/data/coco_vocabulary.yaml``), so covering a new word is a
one-line edit there. Without a parser, the head noun is found by rule: the target's noun phrase
ends at the first preposition, conjunction, relative pronoun or participle ("white airplane |
landing on ground", "man | in red"), and its head is the last content word before that ("a
girl's hand" -> hand).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from chattracker.grounding.colors import canonical_color

_TOKEN = re.compile(r"'s\b|[a-z0-9]+(?:-[a-z0-9]+)*")
_MAX_TERM_WORDS = 3


@dataclass(frozen=True)
class Vocabulary:
    classes: tuple[str, ...]
    term_classes: dict[str, tuple[str, ...]]  # singular word or multi-word term -> classes
    irregular_plurals: dict[str, str]
    boundary_words: frozenset[str]
    stop_words: frozenset[str]
    position_words: dict[str, str]
    size_words: dict[str, str]
    partitive_words: frozenset[str] = field(default_factory=frozenset)
    multiword_terms: frozenset[str] = field(default_factory=frozenset)


@cache
def vocabulary() -> Vocabulary:
    """The COCO vocabulary table, loaded once."""
    text = resources.files("chattracker").joinpath("data/coco_vocabulary.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for table in ("boundary_words", "stop_words"):
        odd = [w for w in data[table] if not isinstance(w, str)]
        if odd:  # YAML turns a bare on/off/yes/no into a boolean
            raise ValueError(f"coco_vocabulary.yaml: {table} has non-words {odd}; quote them")
    classes = tuple(data["classes"])
    terms: dict[str, tuple[str, ...]] = {name: (name,) for name in classes}
    for name, words in data["synonyms"].items():
        if name not in classes:
            raise ValueError(f"coco_vocabulary.yaml: synonyms for unknown class {name!r}")
        for word in words or ():
            terms[word] = (name,)
    for word, names in data["hypernyms"].items():
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise ValueError(f"coco_vocabulary.yaml: hypernym {word!r} names unknown classes {unknown}")
        terms.setdefault(word, tuple(names))
    multi = frozenset(t for t in terms if " " in t)
    multi |= frozenset(w for table in ("position_words", "size_words") for w in data[table] if " " in w)
    return Vocabulary(
        classes=classes,
        term_classes=terms,
        irregular_plurals=dict(data["irregular_plurals"]),
        boundary_words=frozenset(data["boundary_words"]),
        stop_words=frozenset(data["stop_words"]),
        position_words=dict(data["position_words"]),
        size_words=dict(data["size_words"]),
        partitive_words=frozenset(data["partitive_words"]),
        multiword_terms=multi,
    )


def singular(word: str) -> str:
    """Undo English plural endings (rule-based, with the table's irregular forms)."""
    vocab = vocabulary()
    if word in vocab.irregular_plurals:
        return vocab.irregular_plurals[word]
    if " " in word:  # multi-word term: the last word carries the plural
        head, _, last = word.rpartition(" ")
        return f"{head} {singular(last)}"
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def classes_of_word(word: str) -> tuple[str, ...]:
    """COCO classes a single word or multi-word term names (empty when none)."""
    terms = vocabulary().term_classes
    word = word.lower()
    return terms.get(word) or terms.get(singular(word)) or ()


def tokenize(text: str) -> list[str]:
    """Lower-case words, with known multi-word terms ("teddy bear", "race car") joined into one token."""
    words = _TOKEN.findall(text.lower().replace("’", "'"))
    multi = vocabulary().multiword_terms
    tokens: list[str] = []
    i = 0
    while i < len(words):
        for size in range(min(_MAX_TERM_WORDS, len(words) - i), 1, -1):
            candidate = " ".join(words[i:i + size])
            if candidate in multi or singular(candidate) in multi:
                tokens.append(candidate)
                i += size
                break
        else:
            tokens.append(words[i])
            i += 1
    return tokens


def _is_participle(token: str) -> bool:
    return len(token) > 4 and token.endswith(("ing", "ed"))


def _is_attribute(token: str) -> bool:
    vocab = vocabulary()
    return canonical_color(token) is not None or token in vocab.position_words or token in vocab.size_words


def _target_chunk(tokens: list[str]) -> list[str]:
    """The tokens of the target's noun phrase (before the first boundary word or participle)."""
    vocab = vocabulary()
    previous: str | None = None  # the last content word seen
    for i, token in enumerate(tokens):
        if previous is not None and token in vocab.boundary_words:
            content = [t for t in tokens[:i] if t not in vocab.stop_words]
            # "group of giraffes": the collection word is not the target, the thing after "of" is.
            if token == "of" and content and singular(content[-1]) in vocab.partitive_words:
                return _target_chunk(tokens[i + 1:])
            return tokens[:i]
        # A participle after a noun starts a clause ("bear standing", "lizard eating food"); among
        # the leading adjectives and before a known noun it is one of them ("red spotted dog").
        if previous is not None and _is_participle(token) and not classes_of_word(token):
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (_is_attribute(previous) and classes_of_word(following)):
                return tokens[:i]
        if token not in vocab.stop_words:
            previous = token
    return tokens


def head_noun(phrase: str) -> str | None:
    """The word that names the target: last content word of the leading noun phrase."""
    vocab = vocabulary()
    chunk = _target_chunk(tokenize(phrase))
    content = [t for t in chunk if t not in vocab.stop_words]
    if not content:
        return None
    # The possessive owner is not the target ("a girl's hand" -> hand, not girl).
    owned = {chunk[i - 1] for i, t in enumerate(chunk) if t == "'s" and i > 0}
    candidates = [t for t in content if t not in owned]
    # Prefer the last word that names a COCO class ("bicycle ride" -> bicycle), then the last
    # non-attribute word ("person left" -> person), then whatever is left.
    for keep in (lambda t: bool(classes_of_word(t)) and not (_is_attribute(t) and t != candidates[-1]),
                 lambda t: not _is_attribute(t), lambda t: True):
        chosen = [t for t in candidates if keep(t)]
        if chosen:
            return chosen[-1]
    return content[-1]


def coco_classes_for(phrase: str) -> list[str]:
    """COCO classes the phrase's target may belong to, from its head noun (empty when unknown)."""
    head = head_noun(phrase)
    return list(classes_of_word(head)) if head else []


@dataclass(frozen=True)
class ParsedPhrase:
    """A phrase split into what a detector can check: head classes, colours, position, size, context."""

    text: str
    words: tuple[str, ...]  # content words in order (multi-word terms as one word)
    head: str | None
    classes: tuple[str, ...]  # COCO classes of the head noun
    colors: dict[str, str]  # word -> canonical colour name
    positions: dict[str, str]  # word -> left/right/top/bottom/center
    sizes: dict[str, str]  # word -> big/small
    context: dict[str, tuple[str, ...]]  # other words that name COCO classes -> classes


def parse_phrase(phrase: str) -> ParsedPhrase:
    """Split a referring phrase into the parts the YOLOX grounder scores word by word."""
    vocab = vocabulary()
    tokens = tokenize(phrase)
    head = head_noun(phrase)
    words = tuple(dict.fromkeys(t for t in tokens if t not in vocab.stop_words))
    colors: dict[str, str] = {}
    positions: dict[str, str] = {}
    sizes: dict[str, str] = {}
    context: dict[str, tuple[str, ...]] = {}
    for word in words:
        if word == head:
            continue
        if classes_of_word(word):
            context[word] = classes_of_word(word)
        elif canonical_color(word):
            colors[word] = canonical_color(word)  # type: ignore[assignment]
        elif word in vocab.position_words:
            positions[word] = vocab.position_words[word]
        elif word in vocab.size_words:
            sizes[word] = vocab.size_words[word]
    return ParsedPhrase(
        text=phrase,
        words=words,
        head=head,
        classes=classes_of_word(head) if head else (),
        colors=colors,
        positions=positions,
        sizes=sizes,
        context=context,
    )


@cache
def lasot_coco_table() -> dict[str, str | None]:
    """LaSOT category -> COCO class (``None`` where COCO has no such object)."""
    text = resources.files("chattracker").joinpath("data/lasot_coco.yaml").read_text(encoding="utf-8")
    table = yaml.safe_load(text)
    classes = vocabulary().classes
    bad = {k: v for k, v in table.items() if v is not None and v not in classes}
    if bad:
        raise ValueError(f"lasot_coco.yaml: not COCO classes: {bad}")
    return table
