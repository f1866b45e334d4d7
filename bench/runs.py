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
    """"rlcf" or "rlcf:steps=10+lr=0.01": a method and option overrides (JSON values)."""
    method, _, overrides = entry.partition(":")
    return method, parse_option_flags(overrides.split("+") if overrides else [])


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
