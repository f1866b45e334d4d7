"""The API's side of the queue (asyncio): submit jobs, read their status and events, and
report queue statistics. Never imports torch."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from contract.errors import NotReplicatedError, QueueFullError, TooManyInflightError
from service.queue import scripts
from service.queue.fields import JobField
from service.queue.keys import Keys
from service.queue.routing import route_of
from service.queue.schemas import (
    JobSpec,
    QueueEvent,
    as_text,
    dumps,
    error_payload,
    loads,
    now_ms,
    parse_event,
)

WORKER_STALE_PERIODS = 5
"""A worker is live while its last heartbeat is younger than this many of its periods."""
EVENTS_PAGE = 500
"""Events read from a job's stream per round trip."""
WORKER_FORGET_S = 600
"""A worker heartbeat this old is deleted: it is not coming back under that id."""
REPLICAS_READ_EVERY_S = 60.0
"""How often an unset ``ReplicaWait.replicas`` re-reads how many replicas the master has."""
CARRY_MAX_BYTES = 64 * 1024
"""A job whose spec and images take at most this many bytes travels whole in its stream entry
(``EntryField``), so an idle worker woken by it runs it a round trip sooner; a larger one
would make every read of the stream heavier."""


@dataclass(frozen=True)
class ReplicaWait:
    """Whether a submission waits for replicas (Redis WAIT) before it is acknowledged."""

    replicas: int | None = 0
    """Replicas that must hold the job; None: 1 when the master has one connected, else 0."""
    timeout_ms: int = 500


@dataclass(frozen=True)
class JobView:
    job_id: str
    owner: str
    status: str
    spec: JobSpec
    attempts: int
    worker: str | None
    error: dict[str, Any] | None
    results: dict[int, dict[str, Any]]


@dataclass(frozen=True)
class QueueStats:
    depth: int
    oldest_age_s: float
    dead_letters: int
    workers: list[dict[str, Any]]


class Producer:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, ttl_s: int,
                 replica_wait: ReplicaWait | None = None) -> None:
        # Any: redis-py's reply types are unions that say nothing useful for each command.
        self.client: Any = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.replica_wait = replica_wait or ReplicaWait()
        self._enqueue = scripts.PersistentAsyncScript(client, scripts.ENQUEUE)
        self._withdraw = scripts.PersistentAsyncScript(client, scripts.FAIL)
        self._replicas = (0, -math.inf)
        """(replicas connected to the master, when read): for an unset ``replicas``."""
        self._workers: list[dict[str, Any]] = []
        self._workers_read_at = -math.inf

    async def enqueue(
        self, spec: JobSpec, images: list[bytes], *, max_depth: int, max_inflight: int,
    ) -> str:
        """Store the job and its images and append it to the jobs stream, atomically; returns the
        id of its ``queued`` event. Raises QueueFullError / TooManyInflightError, and
        NotReplicatedError when the replicas it must reach did not confirm it in time."""
        replicas = await self.replicas_to_wait()
        if not replicas:
            return await self._enqueue_on(self.client, spec, images, max_depth, max_inflight)
        # WAIT counts the writes of its own connection: the job and the WAIT share one.
        async with self.client.client() as connection:
            queued = await self._enqueue_on(connection, spec, images, max_depth, max_inflight)
            confirmed = await connection.wait(replicas, self.replica_wait.timeout_ms)
        if confirmed < replicas:
            self._replicas = (0, -math.inf)  # (unset replicas: read again, a failover may have left none)
            await self.withdraw(spec, f"the job reached Redis's master but {confirmed} of the "
                                      f"{replicas} replicas it must reach within "
                                      f"{self.replica_wait.timeout_ms} ms; it was withdrawn and will "
                                      "not run: submit it again")
        return queued

    async def withdraw(self, spec: JobSpec, message: str) -> None:
        """Fail the job, so it never runs (a worker that started it meanwhile has its result
        refused) and raise NotReplicatedError; unless it is finished already (a fast job on an
        idle worker, within the wait): then its answer stands and the submission succeeds."""
        k = self.keys
        error = error_payload(spec.job_id, NotReplicatedError.code, message)
        withdrawn = await self._withdraw(keys=[k.job(spec.job_id), k.events(spec.job_id), k.open_jobs,
                                               k.inflight(spec.owner)],
                                         args=[spec.job_id, now_ms(), dumps(error)])
        if withdrawn:
            raise NotReplicatedError(message, retry_after_s=1)

    async def replicas_to_wait(self) -> int:
        if self.replica_wait.replicas is not None:
            return self.replica_wait.replicas
        count, read_at = self._replicas
        if time.monotonic() - read_at >= REPLICAS_READ_EVERY_S:
            info = await self.client.info("replication")
            count = min(1, int(info.get("connected_slaves", 0)))
            self._replicas = (count, time.monotonic())
        return count

    async def _enqueue_on(self, client: Any, spec: JobSpec, images: list[bytes], max_depth: int,
                          max_inflight: int) -> str:
        k = self.keys
        queued = {"job_id": spec.job_id, "method": spec.method, "n_images": spec.n_images,
                  "deadline_ms": spec.deadline_ms}
        stale_before = spec.created_ms - self.ttl_s * 1000
        spec_json = spec.model_dump_json()
        carry = len(spec_json) + sum(len(image) for image in images) <= CARRY_MAX_BYTES
        reply = await self._enqueue(
            client=client,
            keys=[k.open_jobs, k.inflight(spec.owner), k.job(spec.job_id), k.images(spec.job_id),
                  k.events(spec.job_id), k.jobs(route_of(spec))],
            args=[spec.job_id, spec.created_ms, max_depth, max_inflight, self.ttl_s,
                  spec_json, spec.owner, dumps(queued), stale_before, spec.n_images,
                  spec.deadline_ms, "1" if carry else "0", *images],
        )
        outcome, value = as_text(reply[0]), reply[1]
        if outcome == "queue_full":
            raise QueueFullError(
                f"the queue holds {value} unfinished jobs (limit {max_depth}); retry later",
                retry_after_s=await self._retry_after(),
            )
        if outcome == "too_many_inflight":
            raise TooManyInflightError(
                f"this key has {value} unfinished jobs (limit {max_inflight}); wait for some "
                "to finish", retry_after_s=await self._retry_after(),
            )
        return as_text(value)

    async def _retry_after(self) -> int:
        stats = await self.stats()
        return max(1, min(60, math.ceil(stats.oldest_age_s / 4) or 1))

    async def job(self, job_id: str) -> JobView | None:
        async with self.client.pipeline(transaction=False) as pipe:  # one round trip
            raw, results = await pipe.hgetall(self.keys.job(job_id)).hgetall(
                self.keys.results(job_id)).execute()
        if not raw:
            return None
        fields = {as_text(key): as_text(value) for key, value in raw.items()}
        return JobView(
            job_id=job_id, owner=fields[JobField.OWNER], status=fields[JobField.STATUS],
            spec=JobSpec.model_validate_json(fields[JobField.SPEC]), attempts=int(fields[JobField.ATTEMPTS]),
            worker=fields.get(JobField.WORKER),
            error=json.loads(fields[JobField.ERROR]) if JobField.ERROR in fields else None,
            results={int(as_text(i)): loads(r) for i, r in results.items()},
        )

    async def events(self, job_id: str, after: str, block_ms: int | None,
                     count: int = EVENTS_PAGE) -> list[QueueEvent]:
        """Up to ``count`` events after stream id ``after`` ("0" for all); blocks up to
        ``block_ms`` for new ones. One page: ``event_pages`` reads to the stream's end."""
        reply = await self.client.xread({self.keys.events(job_id): after}, count=count, block=block_ms)
        if not reply:
            return []
        return [parse_event(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def event_pages(self, job_id: str, after: str) -> AsyncIterator[list[QueueEvent]]:
        """Every event after ``after`` that the stream holds now, a page at a time, to its end
        (a follower that joins late, or resumes, must not stop after the first page)."""
        while True:
            page = await self.events(job_id, after, block_ms=None)
            if page:
                yield page
                after = page[-1].id
            if len(page) < EVENTS_PAGE:
                return

    async def status(self, job_id: str) -> str | None:
        value = await self.client.hget(self.keys.job(job_id), JobField.STATUS)
        return as_text(value) if value is not None else None

    async def live_workers(self, max_age_s: float = 0.0) -> list[dict[str, Any]]:
        """Workers whose heartbeat is recent. ``max_age_s`` > 0 may answer from a list read
        that long ago (the admission check of every request: heartbeats come every few
        seconds, so re-reading them per request only costs a round trip and a parse)."""
        if max_age_s > 0 and time.monotonic() - self._workers_read_at <= max_age_s:
            return self._workers
        self._workers = await self._read_live_workers()
        self._workers_read_at = time.monotonic()
        return self._workers

    async def _read_live_workers(self) -> list[dict[str, Any]]:
        """The live workers' heartbeats; those silent for ``WORKER_FORGET_S`` are deleted (a
        worker killed without unregistering, or one long gone)."""
        now = now_ms()
        live, gone = [], []
        for worker_id, raw in (await self.client.hgetall(self.keys.workers)).items():
            info = json.loads(as_text(raw))
            silent_ms = now - info["last_seen_ms"]
            if silent_ms < WORKER_STALE_PERIODS * info["heartbeat_s"] * 1000:
                live.append(info)
            elif silent_ms > WORKER_FORGET_S * 1000:
                gone.append(worker_id)
        if gone:
            await self.client.hdel(self.keys.workers, *gone)
        return live

    async def stats(self) -> QueueStats:
        oldest = await self.client.zrange(self.keys.open_jobs, 0, 0, withscores=True)
        depth = await self.client.zcard(self.keys.open_jobs)
        age = max(0.0, (now_ms() - oldest[0][1]) / 1000) if oldest else 0.0
        dead = await self.client.xlen(self.keys.dead)
        return QueueStats(depth=depth, oldest_age_s=age, dead_letters=dead,
                          workers=await self.live_workers())
