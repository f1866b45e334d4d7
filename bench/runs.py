"""What the accuracy-style benches share: a result row, method variants, a progress bar."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from service.cli.common import parse_option_flags


@dataclass(frozen=True)
class Row:
    method: str
    domain: str
    accuracy: float
    ece: float
    ms_per_image: float
    """Median: the typical image's cost."""
    ms_mean: float | None = None
    """Mean: what a stream of images costs per image (``auto``'s tiers make it differ a lot)."""
    answered_by: dict[str, int] | None = None
    """``auto``: how many images each tier answered."""
    reliability: list[tuple[float, float, int]] | None = None
    """(mean confidence, accuracy, images) per confidence bin: a reliability diagram's points."""


def parse_variant(entry: str) -> tuple[str, dict[str, Any]]:
    """"rlcf" or "rlcf:steps=10+lr=0.01": a method and option overrides (JSON values). A value
    in double quotes may hold + and , (``auto:tiers="tda:n_views=32+selection=0.2,rlcf"``)."""
    method, _, overrides = entry.partition(":")
    return method, parse_option_flags(split_unquoted(overrides, "+") if overrides else [])


def split_unquoted(text: str, separator: str) -> list[str]:
    """``text`` split at each ``separator`` outside double quotes."""
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


class ProgressBar:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = time.perf_counter()

    def __call__(self) -> None:
        self.done += 1
        if self.enabled and (self.done % 10 == 0 or self.done == self.total):
            width = 30
            filled = int(width * self.done / self.total)
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                             f"  {elapsed:.0f}s elapsed, ~{eta:.0f}s left ")
            sys.stderr.flush()
            if self.done == self.total:
                sys.stderr.write("\n")
