"""Phrase -> COCO class mapping: head-noun rules, synonyms, hypernyms, and the 1400 real LaSOT sentences."""

from __future__ import annotations

from pathlib import Path

import pytest

from chattracker.grounding.phrases import (
    coco_classes_for,
    head_noun,
    lasot_coco_table,
    parse_phrase,
    singular,
    tokenize,
    vocabulary,
)


@pytest.mark.parametrize(
    ("phrase", "head"),
    [
        ("white airplane landing on ground", "airplane"),
        ("red basketball on a girl's hand", "basketball"),
        ("right hand of a woman waving", "hand"),
        ("group of giraffe running on the field", "giraffe"),
        ("man in red walking on the stage", "man"),
        ("black bear standing on the ground", "bear"),
        ("motorcycle ridden by a person", "motorcycle"),
        ("little elephant chasing dog on ground", "elephant"),
        ("flying bird above the lake", "bird"),
        ("white racing car moving along track", "racing car"),
        ("person on the left", "person"),
        ("a teddy bear", "teddy bear"),
        ("red spotted dog", "dog"),
        ("lizard eating food on the ground", "lizard"),
    ],
)
def test_head_noun(phrase: str, head: str) -> None:
    assert head_noun(phrase) == head


@pytest.mark.parametrize(
    ("phrase", "classes"),
    [
        ("a young woman", ["person"]),
        ("boy in a black t-shirt", ["person"]),
        ("soccer player running", ["person"]),
        ("two girls", ["person"]),
        ("people", ["person"]),
        ("jet taking off", ["airplane"]),
        ("small plane", ["airplane"]),
        ("puppies playing", ["dog"]),
        ("orange cat", ["cat"]),
        ("the orange on the table", ["orange"]),
        ("cattle grazing", ["cow"]),
        ("a mobile phone held by a hand", ["cell phone"]),
        ("chameleon sitting on the wall", []),
        ("monkey eating food on the ground", []),  # the food is not the target
        ("", []),
    ],
)
def test_coco_classes_for(phrase: str, classes: list[str]) -> None:
    assert coco_classes_for(phrase) == classes


def test_hypernyms_cover_several_classes() -> None:
    assert {"car", "truck", "bus", "boat"} <= set(coco_classes_for("red vehicle"))
    assert {"dog", "cat", "horse"} <= set(coco_classes_for("an animal in the grass"))


def test_plurals_and_tokens() -> None:
    assert [singular(w) for w in ("buses", "ponies", "men", "glasses", "boxes", "bus")] == [
        "bus", "pony", "man", "glass", "box", "bus"]
    assert tokenize("A Teddy Bear next to the hot dogs") == ["a", "teddy bear", "next", "to", "the", "hot dogs"]


def test_parse_phrase_splits_attributes() -> None:
    parsed = parse_phrase("small red car on the left next to a person")
    assert parsed.head == "car" and parsed.classes == ("car",)
    assert parsed.colors == {"red": "red"}
    assert parsed.positions == {"left": "left"}
    assert parsed.sizes == {"small": "small"}
    assert parsed.context == {"person": ("person",)}
    assert parsed.words == ("small", "red", "car", "left", "next", "person")


def test_vocabulary_is_consistent() -> None:
    vocab = vocabulary()
    assert len(vocab.classes) == 80 and vocab.classes[:5] == ("person", "bicycle", "car", "motorcycle", "airplane")
    assert all(set(classes) <= set(vocab.classes) for classes in vocab.term_classes.values())
    assert "on" in vocab.boundary_words  # YAML 1.1 would have read a bare `on` as True


def test_lasot_sentences_map_to_their_category(shared_data: Path) -> None:
    """Category = sequence name before the last '-'; >= 95% of sequences with a COCO class recover it."""
    table = lasot_coco_table()
    files = sorted((shared_data / "lasot_toolkit" / "annos" / "nlp").glob("*.txt"))
    assert len(files) == 1400
    categories = {f.stem.rsplit("-", 1)[0] for f in files}
    assert categories == set(table), "the LaSOT -> COCO table must list exactly the 70 LaSOT categories"
    total = hits = 0
    misses = []
    for path in files:
        wanted = table[path.stem.rsplit("-", 1)[0]]
        if wanted is None:
            continue
        sentence = path.read_text(encoding="utf-8").strip()
        got = coco_classes_for(sentence)
        total += 1
        if wanted in got:
            hits += 1
        else:
            misses.append(f"{path.stem}: {sentence!r} -> head {head_noun(sentence)!r} -> {got}")
    print(f"\nLaSOT sentences with a COCO category: {total}; recovered {hits} ({hits / total:.1%}); misses:")
    print("\n".join(misses))
    assert total == 600
    assert hits / total >= 0.95
