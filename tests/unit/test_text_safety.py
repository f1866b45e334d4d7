"""Which characters a label may hold: every ASCII control is refused (also on the fast path
for ASCII text), printable ASCII and ordinary non-ASCII letters pass."""

import re

import pytest

from contract.errors import InvalidLabelsError
from contract.labels import validate_labels
from contract.text_safety import unsafe_character


@pytest.mark.parametrize("code", [*range(0x20), 0x7F])
def test_every_ascii_control_is_refused(code):
    assert unsafe_character(f"cat{chr(code)}") == f"U+{code:04X}, a control character"


def test_printable_ascii_and_letters_of_other_scripts_pass():
    assert unsafe_character("".join(chr(c) for c in range(0x20, 0x7F))) is None
    assert unsafe_character("chat noir, 猫, кошка") is None


def test_invisible_characters_are_refused_and_named():
    assert unsafe_character("cat\u200b") == "U+200B, an invisible formatting character"
    with pytest.raises(InvalidLabelsError, match=re.escape("label #2 contains U+2028, a line separator")):
        validate_labels(["dog", "ca\u2028t"])


def test_a_zero_width_joiner_is_allowed_only_inside_an_emoji_sequence():
    for emoji in ("\U0001F469\u200d\U0001F52C", "\U0001F3F3\ufe0f\u200d\U0001F308",
                  "\U0001F468\U0001F3FD\u200d\U0001F4BB", "\U0001F469\u200d\U0001F469\u200d\U0001F467"):
        assert unsafe_character(emoji) is None, repr(emoji)
        assert unsafe_character(f"a {emoji} scientist") is None
    assert validate_labels(["\U0001F469\u200d\U0001F52C", "\U0001F469"]) == ("\U0001F469\u200d\U0001F52C",
                                                                            "\U0001F469")
    for hidden in ("cat\u200d", "\u200dcat", "c\u200dat", "\U0001F469\u200d", "\u200d\U0001F52C",
                   "\U0001F469\u200da", "\U0001F469\u200b\U0001F52C"):
        assert unsafe_character(hidden) is not None, repr(hidden)
