"""Which characters a label may hold: every ASCII control is refused (also on the fast path
for ASCII text), printable ASCII and ordinary non-ASCII letters pass."""

import re

import pytest

from models.errors import InvalidLabelsError
from models.labels import validate_labels
from models.text_safety import unsafe_character


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
