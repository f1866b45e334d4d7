"""The worker's side of the queue (synchronous): read and reclaim jobs, run the atomic state
transitions, publish events, renew leases, acknowledge."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from service.queue import scripts
from service.queue.keys import GROUP, Keys
from service.queue.schemas import JobSpec, as_text, dumps, error_payload, now_ms

RECTIFICATION_LOG_MAXLEN = 100_000
"""Decisions kept per key in the rectification log (older ones are trimmed)."""


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this worker."""

    stream: str
    """The route's jobs stream the entry is in."""
    entry_id: str
    job_id: str
    reclaimed: bool = False
    resumed: bool = False
    """Taken back after a Redis outage interrupted its run (check it is still ours first)."""


@dataclass(frozen=True)
class StartedJob:
    spec: JobSpec
    attempt: int
    queue_ms: float
    done_images: frozenset[int]
    """Images a previous attempt already finished (their results stand; not re-run)."""


class Consumer:
    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, *, ttl_s: int,
                 max_attempts: int, routes: list[str]) -> None:
        # Any: redis-py's reply types are unions that say nothing useful for each command.
        self.client: Any = client
        self.keys = keys
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self.max_attempts = max_attempts
        self.streams = [keys.jobs(r) for r in routes]
        """The streams this worker reads, in order of preference (see ``service.queue.routing``)."""
        self._turn = 0
        self._take_one = client.register_script(scripts.TAKE_ONE)
        self._start = client.register_script(scripts.START)
        self._finish_image = client.register_script(scripts.FINISH_IMAGE)
        self._fail = client.register_script(scripts.FAIL)
        self._publish = client.register_script(scripts.PUBLISH)
        self._renew = client.register_script(scripts.RENEW_LEASES)
        self._release = client.register_script(scripts.RELEASE)

    def ensure_group(self) -> None:
        """Create the consumer group (and stream) of every route if missing: also after Redis
        lost its data."""
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def read_new(self, block_ms: int | None, streams: list[str] | None = None) -> list[Delivery]:
        """At most one new job from ``streams`` (default: all of this worker's), taking turns
        between them; waits up to ``block_ms`` (None: do not wait) when all are empty."""
        streams = streams or self.streams
        self._turn = (self._turn + 1) % len(streams)
        order = streams[self._turn:] + streams[:self._turn]
        taken = self._take_one(keys=order, args=[GROUP, self.worker_id])
        if taken:
            return [Delivery(as_text(taken[0]), as_text(taken[1]), as_text(taken[2]))]
        if not block_ms:
            return []
        # Blocking on several streams returns one entry per stream that got one meanwhile
        # (rarely more than one): all are this worker's now and are run in turn.
        reply = self.client.xreadgroup(GROUP, self.worker_id, dict.fromkeys(order, ">"), count=1,
                                       block=block_ms)
        return [Delivery(as_text(stream), as_text(entry_id), as_text(fields[b"job_id"]))
                for stream, entries in reply or [] for entry_id, fields in entries]

    def reclaim(self, min_idle_ms: int) -> list[Delivery]:
        """Take over one entry whose holder stopped renewing its lease (a dead worker)."""
        for stream in self.streams:
            reply = self.client.xautoclaim(stream, GROUP, self.worker_id, min_idle_ms,
                                           start_id="0-0", count=1)
            found = [Delivery(stream, as_text(entry_id), as_text(fields[b"job_id"]), reclaimed=True)
                     for entry_id, fields in reply[1] if fields]
            if found:
                return found
        return []

    def renew(self, held: list[Delivery]) -> list[Delivery]:
        """Renew the leases of these deliveries; returns those that are no longer ours
        (reclaimed by another worker, or gone with Redis's data), whose leases must not be
        renewed."""
        lost: list[Delivery] = []
        for stream in {d.stream for d in held}:
            entries = {d.entry_id: d for d in held if d.stream == stream}
            reply = self._renew(keys=[stream], args=[GROUP, self.worker_id, *entries])
            lost += [entries[as_text(entry_id)] for entry_id in reply]
        return lost

    def owns(self, delivery: Delivery) -> bool:
        """Whether this worker still holds the delivery's entry (it may have been reclaimed)."""
        try:
            pending = self.client.xpending_range(delivery.stream, GROUP, min=delivery.entry_id,
                                                 max=delivery.entry_id, count=1)
        except redis.ResponseError:  # no group: Redis lost its data, and the job with it
            return False
        return bool(pending) and as_text(pending[0]["consumer"]) == self.worker_id

    def ack(self, delivery: Delivery) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(delivery.stream, GROUP, delivery.entry_id)
        pipe.xdel(delivery.stream, delivery.entry_id)
        pipe.execute()

    def release(self, delivery: Delivery) -> None:
        self._release(keys=[delivery.stream], args=[GROUP, delivery.entry_id, delivery.job_id])

    def start(self, job_id: str) -> tuple[str, StartedJob | None]:
        """("run", job) to run it; otherwise ("missing" | "finished" | "dead" | "expired", None),
        and the job needs no more than an ack (its error event is already published)."""
        k = self.keys
        raw = self.client.hmget(k.job(job_id), ["owner", "spec", "created_ms"])
        if raw[0] is None:
            return "missing", None
        owner = as_text(raw[0])
        dead = error_payload(job_id, "dead_letter",
                             f"the job failed {self.max_attempts} delivery attempts "
                             "(its workers died or timed out); it was moved to the dead-letter stream")
        expired = error_payload(job_id, "deadline_exceeded",
                                "the job waited past its deadline and was not started")
        now = now_ms()
        outcome, attempts = self._start(
            keys=[k.job(job_id), k.events(job_id), k.dead, k.open_jobs, k.inflight(owner)],
            args=[job_id, self.worker_id, now, self.max_attempts, dumps(dead), dumps(expired)],
        )
        outcome = as_text(outcome)
        if outcome != "run":
            return outcome, None
        spec = JobSpec.model_validate_json(as_text(raw[1]))
        done = frozenset(int(as_text(i)) for i in self.client.hkeys(k.results(job_id)))
        return "run", StartedJob(spec=spec, attempt=int(attempts), done_images=done,
                                 queue_ms=float(now - int(as_text(raw[2]))))

    def status(self, job_id: str) -> str | None:
        value = self.client.hget(self.keys.job(job_id), "status")
        return as_text(value) if value is not None else None

    def image(self, job_id: str, index: int) -> bytes | None:
        value = self.client.hget(self.keys.images(job_id), str(index))
        return bytes(value) if value is not None else None

    def publish(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        self._publish(keys=[self.keys.job(job_id), self.keys.events(job_id)],
                      args=[event, dumps({"job_id": job_id, **data})])

    def finish_image(self, spec: JobSpec, index: int, result: dict[str, Any],
                     log_entry: dict[str, Any] | None = None) -> tuple[bool, bool]:
        """Record one image's result, first writer wins; (written, job now complete). A
        ``log_entry`` goes to the owner's rectification log in the same step."""
        k = self.keys
        event = {"job_id": spec.job_id, "image": index, "n_images": spec.n_images, **result}
        written, final = self._finish_image(
            keys=[k.job(spec.job_id), k.results(spec.job_id), k.events(spec.job_id), k.open_jobs,
                  k.inflight(spec.owner), k.rectifications(spec.owner)],
            args=[spec.job_id, index, dumps(result), dumps({**event, "final": False}),
                  dumps({**event, "final": True}), now_ms(), self.ttl_s,
                  dumps(log_entry) if log_entry else "", RECTIFICATION_LOG_MAXLEN],
        )
        return bool(written), bool(final)

    def fail(self, spec: JobSpec, code: str, message: str, **extra: Any) -> bool:
        k = self.keys
        payload = error_payload(spec.job_id, code, message, **extra)
        return bool(self._fail(keys=[k.job(spec.job_id), k.events(spec.job_id), k.open_jobs,
                                     k.inflight(spec.owner)],
                               args=[spec.job_id, now_ms(), dumps(payload)]))

    def heartbeat(self, info: dict[str, Any]) -> None:
        self.client.hset(self.keys.workers, self.worker_id,
                         json.dumps({**info, "last_seen_ms": now_ms()}))

    def unregister(self) -> None:
        self.client.hdel(self.keys.workers, self.worker_id)
