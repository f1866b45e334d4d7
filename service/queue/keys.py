"""Redis key names. Every key starts with the deployment's prefix (``TTA_REDIS_PREFIX``)."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"
"""The consumer group every worker reads the jobs stream through."""
RECTIFICATION_LOG_MAXLEN = 100_000
"""Decisions kept per key in the rectification log (older ones are trimmed)."""


@dataclass(frozen=True)
class Keys:
    prefix: str = "tta"

    def jobs(self, route: str) -> str:
        """Stream of the job ids of one route (``service.queue.routing``); an entry is acked
        and deleted once its job is finished."""
        return f"{self.prefix}:jobs:{route}"

    @property
    def dead(self) -> str:
        """Dead-letter stream: jobs that used up their attempts."""
        return f"{self.prefix}:dead"

    @property
    def open_jobs(self) -> str:
        """Sorted set of unfinished job ids by submission time (queue depth and oldest age)."""
        return f"{self.prefix}:open"

    @property
    def workers(self) -> str:
        """Hash worker id -> JSON heartbeat (models, methods, last seen)."""
        return f"{self.prefix}:workers"

    def inflight(self, owner: str) -> str:
        """Sorted set of one key's unfinished job ids."""
        return f"{self.prefix}:inflight:{owner}"

    def job(self, job_id: str) -> str:
        """Hash: spec, owner, status, attempts, times, error."""
        return f"{self.prefix}:job:{job_id}"

    def images(self, job_id: str) -> str:
        """Hash image index -> bytes; expires with the job."""
        return f"{self.prefix}:job:{job_id}:images"

    def results(self, job_id: str) -> str:
        """Hash image index -> result JSON; first writer wins."""
        return f"{self.prefix}:job:{job_id}:results"

    def events(self, job_id: str) -> str:
        """Stream of the job's events; entry ids are the SSE event ids. Each event is also
        published on the pub/sub channel of the same name (``service.queue.scripts``)."""
        return f"{self.prefix}:job:{job_id}:events"

    @property
    def events_pattern(self) -> str:
        """The pub/sub pattern of every job's events channel (the API's event hub)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:job:*:events"

    def job_of_events(self, channel: bytes | str) -> str | None:
        """The job id of an events channel (or stream) name; None if it is not one."""
        name = channel.decode() if isinstance(channel, bytes) else channel
        head, tail = f"{self.prefix}:job:", ":events"
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            return name[len(head):-len(tail)]
        return None

    def finetunes(self, owner: str) -> str:
        """Sorted set of one key's fine-tune job ids (pruned of finished ones when counted)."""
        return f"{self.prefix}:finetunes:{owner}"

    def label_set(self, owner: str, name: str) -> str:
        return f"{self.prefix}:labelset:{owner}:{name}"

    def label_set_index(self, owner: str) -> str:
        return f"{self.prefix}:labelsets:{owner}"

    def rectifications(self, owner: str) -> str:
        """Stream of one key's MLLM decisions (before, after, candidate scores), for export."""
        return f"{self.prefix}:rectifications:{owner}"
