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


def unsafe_character(text: str) -> str | None:
    """A description of the first refused character in ``text`` (e.g. "U+200B, an invisible
    formatting character"), or None if every character is allowed."""
    if text.isascii() and text.isprintable():  # (the usual label, checked in C: no refused one)
        return None
    for char in text:
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}, {REFUSED_CATEGORIES[category]}"
    return None
