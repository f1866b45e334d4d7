"""Label-list validation shared by the CLI, the API and the worker (torch-free)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from contract.errors import InvalidLabelsError
from contract.text_safety import unsafe_character

LABEL_SET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A label set's name: 1-64 letters, digits, '.', '_' or '-', not starting with a sign."""
LABEL_SET_NAME_PATTERN = re.compile(LABEL_SET_NAME)
MAX_LABELS = 2000
MAX_LABEL_CHARS = 100


def parse_label_text(text: str) -> list[str]:
    """Split one comma-separated value ("cat, dog,bird") into labels."""
    return [part.strip() for part in text.split(",")]


def validate_labels(
    labels: Iterable[str], *, max_labels: int = MAX_LABELS, max_chars: int = MAX_LABEL_CHARS
) -> tuple[str, ...]:
    """Return the labels stripped, or raise naming the first problem found."""
    cleaned = tuple(label.strip() if isinstance(label, str) else label for label in labels)
    for index, label in enumerate(cleaned):
        if not isinstance(label, str):
            raise InvalidLabelsError(f"label #{index + 1} is not a string", field="labels")
    if len(cleaned) < 2:
        raise InvalidLabelsError(
            f"need at least 2 labels to classify among, got {len(cleaned)}", field="labels"
        )
    if len(cleaned) > max_labels:
        raise InvalidLabelsError(
            f"too many labels: {len(cleaned)} (at most {max_labels} allowed)", field="labels"
        )
    seen: set[str] = set()
    for index, label in enumerate(cleaned):
        if not label:
            raise InvalidLabelsError(f"label #{index + 1} is empty", field="labels")
        if len(label) > max_chars:
            raise InvalidLabelsError(
                f"label #{index + 1} is {len(label)} characters long (at most {max_chars})",
                field="labels",
            )
        problem = unsafe_character(label)
        if problem:
            raise InvalidLabelsError(f"label #{index + 1} contains {problem}", field="labels")
        key = unicodedata.normalize("NFKC", label).casefold()  # "Cat" == "cat" == "ｃａｔ"
        if key in seen:
            raise InvalidLabelsError(f"duplicate label {label!r}", field="labels")
        seen.add(key)
    return cleaned
