"""Which characters a label, template or name may contain (torch-free; API, CLI and worker).

Control, format (zero-width, bidi overrides), surrogate, private-use and line/paragraph
separator characters are refused: they make labels that look equal compare different
("cat" vs "cat\\u200b"), reorder text on screen, or cannot be encoded as UTF-8 at all.
"""

from __future__ import annotations

import unicodedata

REFUSED_CATEGORIES = {
    "Cc": "a control character", "Cf": "an invisible formatting character",
    "Cs": "a lone surrogate", "Co": "a private-use character", "Cn": "an unassigned code point",
    "Zl": "a line separator", "Zp": "a paragraph separator",
}


ZERO_WIDTH_JOINER = "\u200d"
EMOJI_CATEGORIES = ("So", "Sk")
"""Emoji are symbols (So); skin-tone modifiers are Sk."""
VARIATION_SELECTORS = ("\ufe0e", "\ufe0f")


def unsafe_character(text: str) -> str | None:
    """A description of the first refused character in ``text`` (e.g. "U+200B, an invisible
    formatting character"), or None if every character is allowed. A zero-width joiner is
    allowed inside an emoji sequence (an emoji, optionally a variation selector, the joiner,
    an emoji: "👩‍🔬"), where it is part of the character a reader sees."""
    if text.isascii() and text.isprintable():  # (the usual label, checked in C: no refused one)
        return None
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES and not _joins_emoji(text, position):
            return f"U+{ord(char):04X}, {REFUSED_CATEGORIES[category]}"
    return None


def _joins_emoji(text: str, position: int) -> bool:
    if text[position] != ZERO_WIDTH_JOINER or position == 0 or position + 1 == len(text):
        return False
    before = text[position - 1]
    if before in VARIATION_SELECTORS and position >= 2:
        before = text[position - 2]
    return (unicodedata.category(before) in EMOJI_CATEGORIES
            and unicodedata.category(text[position + 1]) == "So")
