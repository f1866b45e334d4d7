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
        self._take = client.register_script(scripts.TAKE)
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

    def read_new(self, block_ms: int | None, streams: list[str] | None = None,
                 count: int = 1) -> list[Delivery]:
        """Up to ``count`` new jobs from ``streams`` (default: all of this worker's), taking
        turns between them; waits up to ``block_ms`` (None: do not wait) when all are empty."""
        streams = streams or self.streams
        self._turn = (self._turn + 1) % len(streams)
        order = streams[self._turn:] + streams[:self._turn]
        taken = self._take(keys=order, args=[GROUP, self.worker_id, count])
        if taken:
            return [Delivery(as_text(taken[i]), as_text(taken[i + 1]), as_text(taken[i + 2]))
                    for i in range(0, len(taken), 3)]
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

    def ack(self, *deliveries: Delivery) -> None:
        pipe = self.client.pipeline(transaction=True)
        for delivery in deliveries:
            pipe.xack(delivery.stream, GROUP, delivery.entry_id)
            pipe.xdel(delivery.stream, delivery.entry_id)
        pipe.execute()

    def release(self, delivery: Delivery) -> None:
        self._release(keys=[delivery.stream], args=[GROUP, delivery.entry_id, delivery.job_id])

    def start(self, job_id: str) -> tuple[str, StartedJob | None]:
        """("run", job) to run it; otherwise ("missing" | "finished" | "dead" | "expired", None),
        and the job needs no more than an ack (its error event is already published)."""
        return self.start_all([job_id])[0]

    def start_all(self, job_ids: list[str]) -> list[tuple[str, StartedJob | None]]:
        """``start`` for several jobs: two round trips for one job, three for a batch of any
        size (its reads, then its START scripts pipelined)."""
        k = self.keys
        if len(job_ids) == 1:
            raws = [self.client.hmget(k.job(job_ids[0]), ["owner", "spec", "created_ms"])]
        else:
            pipe = self.client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hmget(k.job(job_id), ["owner", "spec", "created_ms"])
            raws = pipe.execute()
        now = now_ms()
        calls = [(job_id, raw, self._start_call(job_id, raw, now))
                 for job_id, raw in zip(job_ids, raws, strict=True) if raw[0] is not None]
        if len(calls) == 1:
            replies = [self._start(keys=calls[0][2][0], args=calls[0][2][1])]
        elif calls:
            replies = self._scripts_in_one_trip([(self._start, keys, args) for _, _, (keys, args) in calls])
        else:
            replies = []
        started = {job_id: self._started(raw, reply, now)
                   for (job_id, raw, _), reply in zip(calls, replies, strict=True)}
        return [started.get(job_id, ("missing", None)) for job_id in job_ids]

    def _start_call(self, job_id: str, raw: list[Any], now: int) -> tuple[list[str], list[Any]]:
        """(keys, args) of the START script for a job whose (owner, spec, created_ms) is ``raw``."""
        k = self.keys
        dead = error_payload(job_id, "dead_letter",
                             f"the job failed {self.max_attempts} delivery attempts "
                             "(its workers died or timed out); it was moved to the dead-letter stream")
        expired = error_payload(job_id, "deadline_exceeded",
                                "the job waited past its deadline and was not started")
        return ([k.job(job_id), k.events(job_id), k.dead, k.open_jobs, k.inflight(as_text(raw[0])),
                 k.results(job_id)],
                [job_id, self.worker_id, now, self.max_attempts, dumps(dead), dumps(expired),
                 float(now - int(as_text(raw[2])))])

    @staticmethod
    def _started(raw: list[Any], reply: list[Any], now: int) -> tuple[str, StartedJob | None]:
        outcome = as_text(reply[0])
        if outcome != "run":
            return outcome, None
        spec = JobSpec.model_validate_json(as_text(raw[1]))
        done = frozenset(int(as_text(i)) for i in reply[2])
        return "run", StartedJob(spec=spec, attempt=int(reply[1]), done_images=done,
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
        keys, args = self._finish_call(spec, index, result, log_entry)
        written, final = self._finish_image(keys=keys, args=args)
        return bool(written), bool(final)

    def _finish_call(self, spec: JobSpec, index: int, result: dict[str, Any],
                     log_entry: dict[str, Any] | None = None) -> tuple[list[str], list[Any]]:
        """(keys, args) of the FINISH_IMAGE script for one image."""
        k = self.keys
        event = {"job_id": spec.job_id, "image": index, "n_images": spec.n_images, **result}
        return ([k.job(spec.job_id), k.results(spec.job_id), k.events(spec.job_id), k.open_jobs,
                 k.inflight(spec.owner), k.rectifications(spec.owner)],
                [spec.job_id, index, dumps(result), dumps({**event, "final": False}),
                 dumps({**event, "final": True}), now_ms(), self.ttl_s,
                 dumps(log_entry) if log_entry else "", RECTIFICATION_LOG_MAXLEN])

    # Bulk forms for a batch of jobs: one round trip for all of them, not one per job (under
    # load each round trip waits for Redis to be scheduled, and a batch of 32 paid ~100).

    def images(self, wanted: list[tuple[str, int]]) -> list[bytes | None]:
        """The stored bytes of each (job id, image index), None where expired."""
        pipe = self.client.pipeline(transaction=False)
        for job_id, index in wanted:
            pipe.hget(self.keys.images(job_id), str(index))
        return [bytes(v) if v is not None else None for v in pipe.execute()]

    def publish_and_finish(self, events: list[tuple[str, str, dict[str, Any]]],
                           results: list[tuple[JobSpec, int, dict[str, Any]]]) -> list[tuple[bool, bool]]:
        """Publish ``events`` (job id, event, data), then record ``results`` (spec, image,
        result) as ``finish_image`` does, in that order, in one round trip."""
        calls = [(self._publish, [self.keys.job(job_id), self.keys.events(job_id)],
                  [event, dumps({"job_id": job_id, **data})]) for job_id, event, data in events]
        calls += [(self._finish_image, *self._finish_call(spec, index, result))
                  for spec, index, result in results]
        replies = self._scripts_in_one_trip(calls)[len(events):]
        return [(bool(written), bool(final)) for written, final in replies]

    def _scripts_in_one_trip(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        """Run (script, keys, args) calls in one pipelined round trip, by hash (redis-py's
        pipelined scripts cost a SCRIPT EXISTS round trip first). If Redis lost its script
        cache (a restart), every call of the trip failed before doing anything: the scripts
        are loaded again and the trip repeated once."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return list(pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                for script in {id(script): script for script, _, _ in calls}.values():
                    script.sha = self.client.script_load(script.script)
        raise AssertionError("unreachable")

    def statuses(self, job_ids: list[str]) -> list[str | None]:
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id), "status")
        return [as_text(v) if v is not None else None for v in pipe.execute()]

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
