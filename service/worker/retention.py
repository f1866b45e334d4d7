"""Keeping the images (and answers) of a label set's requests for later fine-tuning, where the
label set's owner opted in (``PUT /v1/label-sets/{name}/retention``).

Each record is written before the image's result, with HSETNX on ``<job>:<image>``: a
redelivered job that re-runs the image writes nothing new. Bounds (bytes, days) are enforced in
the same Lua step, oldest first.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from adapters.types import AdaptationResult
from service.queue.consumer import StartedJob
from service.queue.keys import Keys
from service.queue.schemas import dumps, now_ms
from service.queue.scripts import RETAIN, PersistentScript
from service.queue.training import Retention


class TrainingRetention:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client: Any = client
        self.keys = keys
        self._retain = PersistentScript(client, RETAIN)

    def policy(self, owner: str, label_set: str) -> Retention:
        return Retention.decode(self.client.hgetall(self.keys.training(owner, label_set).retention))

    def keep(self, job: StartedJob, index: int, data: bytes, result: AdaptationResult,
             model: str) -> bool:
        """Retain this image and its answer if the job's label set opted in; True if kept."""
        spec = job.spec
        if spec.label_set is None or spec.kind != "classify" or spec.label_set_owner is not None:
            return False  # (a bundled label set keeps nothing: it is nobody's to train on)
        retention = self.policy(spec.owner, spec.label_set)
        if not retention.enabled:
            return False
        tk = self.keys.training(spec.owner, spec.label_set)
        ts = now_ms()
        record = {
            "ts_ms": ts, "job_id": spec.job_id, "image": index, "method": spec.method, "model": model,
            "label_set_version": spec.label_set_version, "before": result.zeroshot_top_k[0].label,
            "after": result.label, "changed": result.changed, "score": result.score,
            "gate_score": result.metrics.get("gate_score"),
            "image_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        }
        cutoff = ts - int(retention.max_days * 86_400_000)
        self._retain(keys=[tk.meta, tk.images, tk.order, tk.bytes],
                     args=[f"{spec.job_id}:{index}", dumps(record), data, ts, retention.max_bytes, cutoff])
        return True
