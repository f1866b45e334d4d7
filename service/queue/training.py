"""Fine-tuning state shared by the API and the worker: a label set's retention policy, the
filter a fine-tune trains through, and the retained records' format (their keys:
``Keys.training``; the write that keeps one: ``scripts.RETAIN``).

A record id is ``<job id>:<image index>``: a redelivered job rewrites nothing (HSETNX).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SOURCES = ("mllm", "rlcf", "rlcf-tune", "tpt", "any")
"""Label sources a fine-tune can train on: the method whose results it uses ("any": all of
them). Zero-shot answers are not retained: training on them teaches the model nothing new."""
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_DAYS = 30.0
MAX_TRAINING_IMAGES = 100_000


@dataclass(frozen=True)
class Retention:
    enabled: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    max_days: float = DEFAULT_MAX_DAYS

    @staticmethod
    def decode(raw: dict[Any, Any]) -> Retention:
        fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in raw.items()}
        if not fields:
            return Retention()
        return Retention(enabled=fields.get("enabled") == "1", max_bytes=int(fields["max_bytes"]),
                         max_days=float(fields["max_days"]))

    def encode(self) -> dict[str, str]:
        return {"enabled": "1" if self.enabled else "0", "max_bytes": str(self.max_bytes),
                "max_days": repr(self.max_days)}


@dataclass(frozen=True)
class TrainingFilter:
    """Which retained records a fine-tune trains on."""

    source: str = "any"
    changed_only: bool = False
    min_score: float | None = None
    """Minimum confidence of the answer (``score``), or for mllm records its gate score."""
    since_ms: int | None = None
    until_ms: int | None = None

    def accepts(self, record: dict[str, Any]) -> bool:
        if self.source != "any" and record.get("method") != self.source:
            return False
        if self.changed_only and not record.get("changed"):
            return False
        if self.min_score is not None:
            score = record.get("gate_score") if record.get("method") == "mllm" else record.get("score")
            if score is None or float(score) < self.min_score:
                return False
        ts = int(record.get("ts_ms", 0))
        return not ((self.since_ms is not None and ts < self.since_ms)
                    or (self.until_ms is not None and ts > self.until_ms))


def parse_record(raw: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(raw)
    return record
