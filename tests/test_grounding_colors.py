"""Named colours from HSV rules: pure colours, achromatic ones, and region vs surroundings."""

from __future__ import annotations

import numpy as np
import pytest

from chattracker.grounding.colors import (
    canonical_color,
    color_match,
    color_names,
    label_pixels,
    region_colors,
    surrounding_colors,
)
from chattracker.types import Box


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((230, 20, 20), "red"), ((20, 200, 30), "green"), ((30, 60, 220), "blue"), ((240, 230, 30), "yellow"),
        ((250, 140, 10), "orange"), ((130, 40, 200), "purple"), ((250, 170, 190), "pink"), ((120, 70, 20), "brown"),
        ((0, 0, 0), "black"), ((250, 250, 250), "white"), ((128, 128, 128), "gray"),
    ],
)
def test_pixel_names(rgb: tuple[int, int, int], name: str) -> None:
    pixel = np.array([[rgb]], dtype=np.uint8)
    assert color_names()[int(label_pixels(pixel)[0, 0])] == name


def test_synonyms() -> None:
    assert canonical_color("Grey") == "gray" and canonical_color("golden") == "yellow"
    assert canonical_color("car") is None


def test_region_against_surroundings() -> None:
    image = np.full((100, 100, 3), (30, 60, 220), dtype=np.uint8)  # blue background
    image[40:60, 40:60] = (230, 20, 20)  # red square
    box = Box(40, 40, 20, 20)
    inside, around = region_colors(image, box), surrounding_colors(image, box)
    assert inside["red"] == pytest.approx(1.0) and around["blue"] == pytest.approx(1.0)
    assert color_match(inside, "red") == 1.0 and color_match(inside, "blue") == 0.0
    assert color_match(inside, "dog") == 0.0
