"""Named colours of image regions (HSV rules from ``chattracker/data/colors.yaml``).

Shared by the YOLOX grounder (does a box's colour match a colour word?) and the attributes
describer (which colours set the target apart from its surroundings?).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import cv2
import numpy as np
import yaml

from chattracker.types import Box, Frame


@cache
def _table() -> dict:
    text = resources.files("chattracker").joinpath("data/colors.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def color_names() -> tuple[str, ...]:
    """Canonical colour names, in table order without repeats."""
    return tuple(dict.fromkeys(rule["name"] for rule in _table()["rules"]))


def canonical_color(word: str) -> str | None:
    """``"grey" -> "gray"``, ``"red" -> "red"``, a non-colour word -> ``None``."""
    word = word.lower()
    if word in color_names():
        return word
    return _table().get("synonyms", {}).get(word)


def label_pixels(rgb: np.ndarray) -> np.ndarray:
    """Index into ``color_names()`` for every pixel of an ``HxWx3`` (or ``Nx3``) uint8 RGB array."""
    shape = rgb.shape[:-1]
    pixels = rgb.reshape(1, -1, 3).astype(np.float32) / 255.0
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV).reshape(*shape, 3)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    names = color_names()
    labels = np.full(shape, -1, dtype=np.int16)
    for rule in _table()["rules"]:
        match = labels < 0
        if "saturation" in rule:
            low, high = rule["saturation"]
            match &= (sat >= low) & (sat < high)
        if "value" in rule:
            low, high = rule["value"]
            match &= (val >= low) & (val < high)
        if "hue" in rule:
            in_hue = np.zeros_like(match)
            for low, high in rule["hue"]:
                in_hue |= (hue >= low) & (hue < high)
            match &= in_hue
        labels[match] = names.index(rule["name"])
    return labels


def _histogram(pixels: np.ndarray) -> dict[str, float]:
    names = color_names()
    if pixels.size == 0:
        return {name: 0.0 for name in names}
    counts = np.bincount(label_pixels(pixels).reshape(-1).clip(0), minlength=len(names))
    return {name: float(c) / float(counts.sum()) for name, c in zip(names, counts)}


def _crop(image: Frame, box: Box) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box.clip(width, height).to_xyxy())
    return image[y1:y2, x1:x2]


def region_colors(image: Frame, box: Box, inner: float = 0.6) -> dict[str, float]:
    """Fraction of each named colour in the central ``inner`` part of the box.

    The centre is used because a box's border is mostly background for anything not rectangular.
    """
    return _histogram(_crop(image, Box.from_any(box).scaled(inner)))


def surrounding_colors(image: Frame, box: Box, scale: float = 2.0) -> dict[str, float]:
    """Colour fractions of the ring between the box and the box scaled by ``scale``."""
    box = Box.from_any(box)
    height, width = image.shape[:2]
    outer = box.scaled(scale).clip(width, height)
    ox1, oy1, ox2, oy2 = (int(round(v)) for v in outer.to_xyxy())
    patch = image[oy1:oy2, ox1:ox2]
    if patch.size == 0:
        return _histogram(patch)
    mask = np.ones(patch.shape[:2], dtype=bool)
    ix1, iy1, ix2, iy2 = (int(round(v)) for v in box.clip(width, height).to_xyxy())
    mask[max(iy1 - oy1, 0):max(iy2 - oy1, 0), max(ix1 - ox1, 0):max(ix2 - ox1, 0)] = False
    return _histogram(patch[mask])


def color_match(fractions: dict[str, float], word: str, full_support: float = 0.25) -> float:
    """How much a region's colour fractions support a colour word, in 0..1.

    A quarter of the region in that colour counts as full support: objects rarely fill their box
    and carry highlights and shadows of other names.
    """
    name = canonical_color(word)
    if name is None:
        return 0.0
    return float(min(1.0, fractions.get(name, 0.0) / full_support))
