"""Fine-tuning state in Redis, shared by the API and the worker (torch-free).

Per label set (all under the label set's key, so they belong to its owner):

    <labelset>:retention            hash: enabled, max_bytes, max_days (opt-in image retention)
    <labelset>:training:meta        hash: record id -> JSON (time, job, image, method, model,
                                    before, after, changed, score, gate score, sha256, bytes)
    <labelset>:training:images      hash: record id -> image bytes
    <labelset>:training:order       sorted set: record id by time (eviction, date ranges)
    <labelset>:training:bytes       total image bytes kept
    <labelset>:model                the model version the label set is pointed at (absent: base)
    <labelset>:model:history        list of earlier pointers (newest first), for rollback

Per owner: ``<prefix>:versions:<owner>`` hash, version name -> manifest JSON (what /v1/models
lists and what a label set may be pointed at); per fine-tune job: ``<prefix>:job:<id>:cancel``.

A record id is ``<job id>:<image index>``: a redelivered job rewrites nothing (HSETNX).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.queue.keys import Keys

SOURCES = ("mllm", "rlcf", "rlcf-tune", "tpt", "any")
"""Label sources a fine-tune can train on: the method whose results it uses ("any": all of
them). Zero-shot answers are not retained: training on them teaches the model nothing new."""
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_DAYS = 30.0
MAX_TRAINING_IMAGES = 100_000


@dataclass(frozen=True)
class TrainingKeys:
    keys: Keys
    owner: str
    label_set: str

    @property
    def base(self) -> str:
        return self.keys.label_set(self.owner, self.label_set)

    @property
    def retention(self) -> str:
        return self.base + ":retention"

    @property
    def meta(self) -> str:
        return self.base + ":training:meta"

    @property
    def images(self) -> str:
        return self.base + ":training:images"

    @property
    def order(self) -> str:
        return self.base + ":training:order"

    @property
    def bytes(self) -> str:
        return self.base + ":training:bytes"

    @property
    def model(self) -> str:
        return self.base + ":model"

    @property
    def model_history(self) -> str:
        return self.base + ":model:history"


def versions_key(keys: Keys, owner: str) -> str:
    return f"{keys.prefix}:versions:{owner}"


def cancel_key(keys: Keys, job_id: str) -> str:
    return keys.job(job_id) + ":cancel"


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


RETAIN = """
-- KEYS: meta, images, order, bytes.  ARGV: id, meta JSON, image, ts_ms, max_bytes, cutoff_ms
-- Keep one record (first writer wins), then evict the oldest until within both bounds.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('INCRBY', KEYS[4], string.len(ARGV[3]))
end
local evicted = 0
while true do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #oldest == 0 then break end
  local total = tonumber(redis.call('GET', KEYS[4]) or '0')
  if total <= tonumber(ARGV[5]) and tonumber(oldest[2]) >= tonumber(ARGV[6]) then break end
  local size = redis.call('HSTRLEN', KEYS[2], oldest[1])
  redis.call('DECRBY', KEYS[4], size)
  redis.call('HDEL', KEYS[1], oldest[1])
  redis.call('HDEL', KEYS[2], oldest[1])
  redis.call('ZREM', KEYS[3], oldest[1])
  evicted = evicted + 1
end
return evicted
"""


def parse_record(raw: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(raw)
    return record
