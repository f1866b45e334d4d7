"""The ``finetune`` job: collect a label set's retained images and answers, fine-tune the
policy's visual encoder on them, store the result as a new model version, register it.

Progress (epoch, step, loss, held-out agreement) goes out as ``progress`` events; the job
checks its cancel flag (``DELETE /v1/finetunes/{id}``) before every step. The version name is
derived from the job id, so a redelivered job finds the version an earlier attempt stored and
only registers it: at-least-once delivery, one version.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from PIL import Image

from adapters.finetune import FinetuneCancelled, FinetuneProgress, FinetuneUnsound, finetune_visual
from contract.errors import TTAError
from contract.finetune_params import params_from
from contract.images import decode_image
from models.store import Manifest
from models.templates import resolve_templates
from service.queue.consumer import Consumer, StartedJob
from service.queue.schemas import as_text, now_ms
from service.queue.training import (
    MAX_TRAINING_IMAGES,
    TrainingFilter,
    parse_record,
)
from service.worker.runner import JobFailed
from service.worker.versions import ModelVersions

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5


def version_of(job_id: str) -> str:
    return f"ft-{job_id[:16]}"


@dataclass
class FinetuneJob:
    consumer: Consumer
    versions: ModelVersions
    max_image_pixels: int
    between_steps: Callable[[], None] = lambda: None
    """Called before every training step: the worker serves waiting classify jobs there."""

    @property
    def client(self) -> Any:
        return self.consumer.client

    def fail(self, job: StartedJob, code: str, message: str, **extra: Any) -> NoReturn:
        self.consumer.fail(job.spec, code, message, **extra)
        raise JobFailed(code)

    def cancelled(self, job_id: str) -> bool:
        return bool(self.client.exists(self.consumer.keys.finetune_cancel(job_id)))

    def training_set(self, job: StartedJob) -> tuple[list[Image.Image], list[int], int]:
        """Images and label indices of the retained records the job's filter accepts (newest
        first up to ``max_images``), and how many records were read."""
        spec = job.spec
        assert spec.label_set is not None
        tk = self.consumer.keys.training(spec.owner, spec.label_set)
        flt = TrainingFilter(**spec.request.get("filter", {}))
        limit = int(spec.request.get("max_images", MAX_TRAINING_IMAGES))
        index = {label: i for i, label in enumerate(spec.labels)}
        ids = [as_text(i) for i in self.client.zrevrange(tk.order, 0, -1)]
        chosen = []
        for record_id, raw in zip(ids, self.client.hmget(tk.meta, ids) if ids else [], strict=True):
            if raw is None:
                continue  # evicted meanwhile
            record = parse_record(raw)
            if record.get("after") in index and flt.accepts(record):
                chosen.append((record_id, index[record["after"]]))
            if len(chosen) >= limit:
                break
        images, targets = [], []
        for (record_id, target), data in zip(
                chosen, self.client.hmget(tk.images, [c[0] for c in chosen]) if chosen else [], strict=True):
            if data is None:
                continue
            try:
                images.append(decode_image(bytes(data), field=record_id, max_pixels=self.max_image_pixels))
            except TTAError:
                continue  # was valid when retained; skip rather than fail the whole job
            targets.append(target)
        return images, targets, len(ids)

    def run(self, job: StartedJob) -> None:
        spec = job.spec
        base = self.versions.base_name
        version = version_of(spec.job_id)
        name = f"{base}@{version}"
        if self.cancelled(spec.job_id):
            self.fail(job, "cancelled", "the fine-tune was cancelled before it started")
        store = self.versions.store
        if store.exists(base, version):
            manifest = store.manifest(base, version)  # an earlier attempt finished training
        else:
            manifest = self.train(job, base, version)
        self.client.hset(self.consumer.keys.versions(spec.owner), name, json.dumps(manifest.to_dict()))
        self.consumer.finish_image(spec, 0, {
            "model": name, "version": version, "base_model": base, "parent": manifest.parent,
            "label_set": spec.label_set,
            "manifest": manifest.to_dict(),
            "metrics": {"steps": manifest.metrics.get("steps", 0), "queue_ms": job.queue_ms,
                        "attempt": job.attempt, **manifest.metrics},
        })

    def train(self, job: StartedJob, base: str, version: str) -> Manifest:
        spec = job.spec
        try:
            params = params_from(spec.request.get("hyperparameters", {}))
        except ValueError as exc:
            self.fail(job, "invalid_options", str(exc), field="hyperparameters")
        images, targets, n_records = self.training_set(job)
        if len(images) < 2:
            self.fail(job, "no_training_images",
                      f"only {len(images)} retained images of label set {spec.label_set!r} match the "
                      f"filter ({n_records} retained in all); enable retention and classify first",
                      field="label_set")
        last_sent = [0.0]

        def on_progress(p: FinetuneProgress) -> None:
            now = time.monotonic()
            if p.holdout_agreement is None and now - last_sent[0] < PROGRESS_EVERY_S:
                return
            last_sent[0] = now
            self.consumer.publish(spec.job_id, "progress", {
                "image": 0, "step": p.step, "total_steps": p.total_steps, "epoch": p.epoch,
                "epochs": p.epochs, "loss": p.loss, "metric": "holdout_agreement",
                "value": p.holdout_agreement, "n_images": len(images), "top_k": []})

        try:  # from the version the label set pointed at (spec.model), or the base
            policy = self.versions.engine_for(spec.model, spec.owner).models.policy
        except TTAError as exc:
            self.fail(job, exc.code, exc.message, field="from_model")
        try:
            outcome = finetune_visual(policy, images, targets, spec.labels, resolve_templates(spec.templates),
                                      params, on_progress=on_progress,
                                      should_stop=lambda: self.cancelled(spec.job_id),
                                      between_steps=self.between_steps)
        except FinetuneCancelled as exc:
            self.fail(job, "cancelled", str(exc))
        except FinetuneUnsound as exc:  # nothing is stored or registered
            self.fail(job, "finetune_unsound", f"the fine-tune was not published: {exc}",
                      field="hyperparameters")
        flt = spec.request.get("filter", {})
        manifest = Manifest(
            base=base, version=version, created_ms=now_ms(), source_job=spec.job_id,
            label_set=spec.label_set, label_source=flt.get("source", "any"), owner=spec.owner,
            n_images=len(images), hyperparameters={**params.to_dict(), "filter": flt},
            metrics=outcome.metrics, parent=spec.model)
        try:
            self.versions.store.save(manifest, outcome.visual_state)
        except FileExistsError:
            manifest = self.versions.store.manifest(base, version)  # a concurrent attempt won
        log.info("fine-tune %s: stored %s (%d images)", spec.job_id, manifest.name, len(images))
        return manifest
