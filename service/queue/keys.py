"""Every Redis key the service uses, built in one place. Every key starts with the deployment's
prefix (``TTA_REDIS_PREFIX``); a tenant's keys hold its name, so one tenant's keys never
address another's. What each key holds, who writes it and who reads it: docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"
"""The consumer group every worker reads the jobs streams through."""
RECTIFICATION_LOG_MAXLEN = 100_000
"""Decisions kept per key in the rectification log (older ones are trimmed)."""
APPLIED_TTL_MS = 7 * 24 * 3600 * 1000
"""How long a method-state update id is remembered: a job redelivered later than this after
its update could apply it again (jobs expire much sooner)."""


@dataclass(frozen=True)
class TrainingKeys:
    """One label set's fine-tuning state (all under the label set's key, so its owner's)."""

    base: str

    @property
    def retention(self) -> str:
        """Hash: enabled, max_bytes, max_days (opt-in image retention).
        Writer: API (PUT retention).
        Reader: worker (retention).
        """
        return self.base + ":retention"

    @property
    def meta(self) -> str:
        """Hash: record id (``<job id>:<image>``) -> JSON (time, job, method, before, after, ...).
        Writer: worker (RETAIN).
        Reader: fine-tune job; API (training data, usage).
        """
        return self.base + ":training:meta"

    @property
    def images(self) -> str:
        """Hash: record id -> image bytes.
        Writer: worker (RETAIN).
        Reader: fine-tune job.
        """
        return self.base + ":training:images"

    @property
    def order(self) -> str:
        """Sorted set: record id by time (eviction, date ranges).
        Writer: worker (RETAIN).
        Reader: worker (RETAIN, fine-tune).
        """
        return self.base + ":training:order"

    @property
    def bytes(self) -> str:
        """Total image bytes kept.
        Writer: worker (RETAIN).
        Reader: API (usage and quota).
        """
        return self.base + ":training:bytes"

    @property
    def model(self) -> str:
        """The model version the label set is pointed at (absent: the base model).
        Writer: API (PUT model pointer, rollback).
        Reader: API (intake pins it on the job; POST /v1/finetunes starts from it).
        """
        return self.base + ":model"

    @property
    def model_history(self) -> str:
        """List of earlier pointers, newest first (rollback).
        Writer: API (pointer, rollback).
        Reader: API (rollback).
        """
        return self.base + ":model:history"

    def all(self) -> list[str]:
        return [self.retention, self.meta, self.images, self.order, self.bytes, self.model,
                self.model_history]


@dataclass(frozen=True)
class Keys:
    prefix: str = "tta"

    # The queue ----------------------------------------------------------------------------

    def jobs(self, route: str) -> str:
        """Stream of the job ids of one route (``service.queue.routing``); an entry is acked
        and deleted once its job is finished.
        Writer: API (ENQUEUE), worker (RELEASE).
        Reader: worker (TAKE, XAUTOCLAIM, RENEW_LEASES).
        """
        return f"{self.prefix}:jobs:{route}"

    @property
    def dead(self) -> str:
        """Dead-letter stream: jobs that used up their attempts.
        Writer: worker (START).
        Reader: API (metrics).
        """
        return f"{self.prefix}:dead"

    @property
    def open_jobs(self) -> str:
        """Sorted set of unfinished job ids by submission time (queue depth and oldest age).
        Writer: API (ENQUEUE); worker (START, FINISH_IMAGE, FAIL).
        Reader: API (depth, oldest age).
        """
        return f"{self.prefix}:open"

    @property
    def workers(self) -> str:
        """Hash worker id -> JSON heartbeat (models, methods, last seen).
        Writer: worker (heartbeat).
        Reader: API (readiness, /v1/models, routing hints).
        """
        return f"{self.prefix}:workers"

    def inflight(self, owner: str) -> str:
        """Sorted set of one key's unfinished job ids.
        Writer: API (ENQUEUE); worker (START, FINISH_IMAGE, FAIL).
        Reader: API (the key's limit, usage).
        """
        return f"{self.prefix}:inflight:{owner}"

    # A job ----------------------------------------------------------------------------------

    def job(self, job_id: str) -> str:
        """Hash: the job's fields (``service.queue.fields.JobField``).
        Writer: API (ENQUEUE); worker (START, FINISH_IMAGE, FAIL).
        Reader: API (GET /v1/jobs), worker (START).
        """
        return f"{self.prefix}:job:{job_id}"

    def images(self, job_id: str) -> str:
        """Hash image index -> bytes; expires with the job.
        Writer: API (ENQUEUE).
        Reader: worker (START).
        """
        return f"{self.prefix}:job:{job_id}:images"

    def results(self, job_id: str) -> str:
        """Hash image index -> result JSON; first writer wins.
        Writer: worker (FINISH_IMAGE).
        Reader: worker (START: finished images), API (GET /v1/jobs).
        """
        return f"{self.prefix}:job:{job_id}:results"

    def events(self, job_id: str) -> str:
        """Stream of the job's events; entry ids are the SSE event ids. Each event is also
        published on the pub/sub channel of the same name (``service.queue.scripts``).
        Writer: API (ENQUEUE), worker (every other script).
        Reader: API (SSE backlog and resume, event hub).
        """
        return f"{self.prefix}:job:{job_id}:events"

    def finetune_cancel(self, job_id: str) -> str:
        """Set by DELETE /v1/finetunes/{id}; the fine-tune checks it before every step.
        Writer: API (DELETE /v1/finetunes).
        Reader: fine-tune job.
        """
        return self.job(job_id) + ":cancel"

    @property
    def events_pattern(self) -> str:
        """The pub/sub pattern of every job's events channel (the API's event hub).
        Reader: API (event hub, PSUBSCRIBE).
        """
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:job:*:events"

    def job_of_events(self, channel: bytes | str) -> str | None:
        """The job id of an events channel (or stream) name; None if it is not one."""
        name = channel.decode() if isinstance(channel, bytes) else channel
        head, tail = f"{self.prefix}:job:", ":events"
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            return name[len(head):-len(tail)]
        return None

    # What a tenant stores ------------------------------------------------------------------------

    def label_set(self, owner: str, name: str) -> str:
        """Hash: name, labels, templates, version, exemplar counts, created.
        Writer: API (label-set routes).
        Reader: API (intake), worker (runner, exemplars).
        """
        return f"{self.prefix}:labelset:{owner}:{name}"

    def label_set_index(self, owner: str) -> str:
        """Set of one owner's label-set names.
        Writer: API (label-set routes).
        Reader: API (listing, quota).
        """
        return f"{self.prefix}:labelsets:{owner}"

    def label_set_exemplars(self, owner: str, name: str) -> str:
        """Hash ``<class index>:<number>`` -> exemplar image bytes.
        Writer: API (label-set routes).
        Reader: worker (exemplars).
        """
        return self.label_set(owner, name) + ":exemplars"

    def label_set_transition(self, owner: str, name: str, version: str) -> str:
        """Hash model name -> the most confused class pairs a worker estimated for this
        label-set version (deleted when the set changes).
        Writer: worker (exemplars).
        Reader: worker (exemplars); API deletes it.
        """
        return self.label_set(owner, name) + f":transition:{version}"

    def training(self, owner: str, name: str) -> TrainingKeys:
        return TrainingKeys(self.label_set(owner, name))

    def versions(self, owner: str) -> str:
        """Hash version name (NAME@VERSION) -> manifest JSON: the owner's model versions.
        Writer: fine-tune job; API (DELETE /v1/models).
        Reader: API (/v1/models, intake), worker (versions).
        """
        return f"{self.prefix}:versions:{owner}"

    def finetunes(self, owner: str) -> str:
        """Sorted set of one key's fine-tune job ids (pruned of finished ones when counted).
        Writer: API (POST /v1/finetunes).
        Reader: API (quota).
        """
        return f"{self.prefix}:finetunes:{owner}"

    def rectifications(self, owner: str) -> str:
        """Stream of one key's MLLM decisions (before, after, candidate scores), for export.
        Writer: worker (FINISH_IMAGE).
        Reader: API (GET /v1/rectifications).
        """
        return f"{self.prefix}:rectifications:{owner}"

    def method_state(self, group: str) -> str:
        """Hash: one method's state for one tenant and label set (``contract.state_scope``),
        a field per model and label list.
        Writer: worker (TDA).
        Reader: worker (TDA); API (GET/DELETE method state).
        """
        return f"{self.prefix}:method-state:{group}"

    def method_state_applied(self, group: str) -> str:
        """Sorted set of the update ids applied to a group (job id / image), by time.
        Writer: worker (TDA).
        Reader: worker (TDA); API deletes it.
        """
        return f"{self.prefix}:method-state:{group}:applied"

    def method_state_index(self, owner: str) -> str:
        """Sorted set of one key's groups by their last update (its quota: the oldest go).
        Writer: worker (TDA).
        Reader: worker (TDA: oldest out), API (usage).
        """
        return f"{self.prefix}:method-state-index:{owner}"

    def drift_reference(self, scope: str) -> str:
        """List: the first observations of one tenant's label set (``contract.state_scope``)
        since it was first observed or reset (``service.queue.drift``), oldest first.
        Writer: worker (FINISH_IMAGE); API deletes it (DELETE /v1/drift).
        Reader: API (GET /v1/drift, /metrics).
        """
        return f"{self.prefix}:drift-reference:{scope}"

    def drift_window(self, scope: str) -> str:
        """List: the last observations of one tenant's label set, newest first.
        Writer: worker (FINISH_IMAGE); API deletes it (DELETE /v1/drift).
        Reader: API (GET /v1/drift, /metrics).
        """
        return f"{self.prefix}:drift-window:{scope}"

    def drift_index(self, owner: str) -> str:
        """Set of one key's observed scopes (its quota: a scope beyond is not observed).
        Writer: worker (FINISH_IMAGE); API removes a reset scope.
        Reader: API (GET /v1/drift, /metrics, usage).
        """
        return f"{self.prefix}:drift-index:{owner}"

    def label_set_keys(self, owner: str, name: str, version: str) -> list[str]:
        """Every key kept for one label set (what deleting it deletes, with its method state)."""
        return [self.label_set(owner, name), self.label_set_exemplars(owner, name),
                self.label_set_transition(owner, name, version), *self.training(owner, name).all()]
