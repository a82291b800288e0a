"""The description's colour words as evidence per candidate: does this box have the colour the words say?

A learned embedding of a small object can miss a plain difference of colour that a sentence states
("the green clock", not the blue one). The grounder already folds colour into its finding score, but
mixed with the class score and the other attribute words, and the base box has no finding score of
its own when no detection confirms it. This step measures, for every candidate box, the share of
the description's colours at its centre (``chattracker.grounding.colors``) on one scale: 1 = the
colour is there, 0 = it is not.

Only hues are used (not black, white or gray), and only when they hold for the target on the
first frame: lightness names follow the lighting (a shadow is black, a highlight white, an
occluding board gray), and words that do not describe the target cannot tell it from anything.
"""

from __future__ import annotations

from chattracker.grounding.colors import color_match, region_colors
from chattracker.grounding.phrases import parse_phrase
from chattracker.types import Box, Frame

FIRST_FRAME_SUPPORT = 0.6  # the target's own support on frame 1 below which the words are not used
ACHROMATIC = frozenset({"black", "white", "gray"})


class ColourEvidence:
    """Support of the foreground description's colour words, per box."""

    def __init__(self) -> None:
        self.words: tuple[str, ...] = ()

    def reset(self, frame: Frame, box: Box, foreground: str) -> None:
        """Take the colour words of ``foreground`` that the target shows on the first frame."""
        words = tuple(dict.fromkeys(parse_phrase(foreground).colors.values())) if foreground else ()
        words = tuple(w for w in words if w not in ACHROMATIC)
        fractions = region_colors(frame, box)
        self.words = tuple(w for w in words if color_match(fractions, w) >= FIRST_FRAME_SUPPORT)

    @property
    def active(self) -> bool:
        return bool(self.words)

    def support(self, frame: Frame, box: Box) -> float | None:
        """Mean support of the colour words at ``box`` (0..1); None without usable colour words."""
        if not self.words:
            return None
        fractions = region_colors(frame, box)
        return sum(color_match(fractions, w) for w in self.words) / len(self.words)
