"""The worker's side of the queue (synchronous): take and reclaim jobs, start them, write their
events and results, renew leases, acknowledge. Each job transition is one Lua script
(``service.queue.scripts``); a job is acknowledged one way (``ack``) and started one way
(``start``), but for one case measured to be worth a second: a small job that wakes an idle
worker runs before its START reply is back (``start_early``)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import redis

from contract.request import MethodRequest
from contract.state_scope import state_key_for
from service.queue import scripts
from service.queue.drift import DriftLimits, observe
from service.queue.event_sender import EventSender
from service.queue.fields import EntryField, JobField
from service.queue.keys import GROUP, RECTIFICATION_LOG_MAXLEN, Keys
from service.queue.schemas import JobSpec, as_text, dumps, error_payload, now_ms

NamedEvent = tuple[str, dict[str, Any]]
"""An event's name and data."""
Start = tuple[str, "StartedJob | None"]
"""A START's outcome: ("run", the job), or ("missing" | "finished" | "dead" | "expired", None)."""


@dataclass(frozen=True)
class CarriedJob:
    """What a small job's stream entry carries besides its id and owner (``EntryField``)."""

    spec: bytes
    created_ms: int
    images: dict[int, bytes]


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this worker."""

    stream: str
    """The route's jobs stream the entry is in."""
    entry_id: str
    job_id: str
    owner: str | None = None
    """The job's owner as the entry names it (None in an entry from before it did)."""
    reclaimed: bool = False
    waited: bool = False
    """It ended a blocking wait on empty streams: nothing else was queued a moment ago."""
    resumed: bool = False
    """Taken back after a Redis outage interrupted its run (check it is still ours first)."""
    carried: CarriedJob | None = field(default=None, compare=False)
    """The job as its entry carries it, when the entry was read whole (by a blocking read);
    not part of the delivery's identity (held deliveries are kept in sets)."""

    def age_ms(self) -> int:
        """Milliseconds since the entry was added (its id is Redis's clock then)."""
        return now_ms() - int(self.entry_id.partition("-")[0])


@dataclass
class EarlyStart:
    """The START of a job that began running before its reply was read (``start_early``)."""

    outcome: str | None = None
    """Set when the reply is read: "run", or why the job is not to run."""


@dataclass(frozen=True)
class StartedJob:
    spec: JobSpec
    attempt: int
    queue_ms: float
    done_images: frozenset[int]
    """Images a previous attempt already finished (their results stand; not re-run)."""
    images: dict[int, bytes] = field(default_factory=dict)
    """The stored bytes of the unfinished images, by index (one missing: it expired)."""
    early: EarlyStart | None = field(default=None, compare=False)
    """Set when the job runs before its START reply was read (``Consumer.start_early``)."""

    @cached_property
    def request(self) -> MethodRequest:
        """A classify job's request, as the method takes it (read once; a job from an older
        release is normalised here, and may raise a TTAError naming what it lacks)."""
        return self.spec.method_request()


class Consumer:
    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str, *, ttl_s: int,
                 max_attempts: int, routes: list[str], log_ttl_s: int = 30 * 86_400,
                 drift: DriftLimits | None = None) -> None:
        # Any: redis-py's reply types are unions that say nothing useful for each command.
        self.client: Any = client
        self.keys = keys
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self.max_attempts = max_attempts
        self.log_ttl_s = log_ttl_s
        """How long a key's rectification log stays after its last entry."""
        self.drift = drift or DriftLimits()
        self.streams = [keys.jobs(r) for r in routes]
        """The streams this worker reads, in order of preference (see ``service.queue.routing``)."""
        self._turn = 0
        self._take = scripts.PersistentScript(client, scripts.TAKE)
        self._start = scripts.PersistentScript(client, scripts.START)
        self._finish_image = scripts.PersistentScript(client, scripts.FINISH_IMAGE)
        self._fail = scripts.PersistentScript(client, scripts.FAIL)
        self._renew = scripts.PersistentScript(client, scripts.RENEW_LEASES)
        self._release = scripts.PersistentScript(client, scripts.RELEASE)
        self._events = EventSender(client, scripts.PersistentScript(client, scripts.PUBLISH))
        """``publish`` sends through it without waiting; every other write of the main thread
        settles it first, so nothing overtakes an event (``renew`` and ``heartbeat``, which the
        keep-alive thread calls, touch no job's events and leave it alone)."""

    def ensure_group(self) -> None:
        """Create the consumer group (and stream) of every route if missing: also after Redis
        lost its data."""
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # Taking jobs ----------------------------------------------------------------------------

    def read_new(self, block_ms: int | None, streams: list[str] | None = None,
                 count: int = 1, mates: tuple[Collection[str], int] | None = None) -> list[Delivery]:
        """Up to ``count`` new jobs from ``streams`` (default: all of this worker's), taking
        turns between them; waits up to ``block_ms`` (None: do not wait) when all are empty.
        ``mates`` (batch streams, n): when the first job taken is of a batch stream, up to n
        more of those streams come with it (not when the read had to wait)."""
        self.settle()
        streams = streams or self.streams
        self._turn = (self._turn + 1) % len(streams)
        order = streams[self._turn:] + streams[:self._turn]
        taken = _deliveries(self._take(keys=order, args=self._take_args(order, count, mates)))
        if taken or not block_ms:
            return taken
        # Blocking on several streams returns one entry per stream that got one meanwhile
        # (rarely more than one): all are this worker's now and are run in turn.
        reply = self.client.xreadgroup(GROUP, self.worker_id, dict.fromkeys(order, ">"), count=1,
                                       block=block_ms)
        return [Delivery(as_text(stream), as_text(entry_id), *_entry(fields), waited=True,
                         carried=_carried(fields))
                for stream, entries in reply or [] for entry_id, fields in entries]

    def _take_args(self, order: list[str], count: int,
                   mates: tuple[Collection[str], int] | None) -> list[str | int]:
        args: list[str | int] = [GROUP, self.worker_id, count]
        if mates is not None and mates[1] > 0:
            args += [mates[1], "".join("1" if stream in mates[0] else "0" for stream in order)]
        return args

    def reclaim(self, min_idle_ms: int) -> list[Delivery]:
        """Take over one entry whose holder stopped renewing its lease (a dead worker)."""
        self.settle()
        for stream in self.streams:
            reply = self.client.xautoclaim(stream, GROUP, self.worker_id, min_idle_ms,
                                           start_id="0-0", count=1)
            found = [Delivery(stream, as_text(entry_id), *_entry(fields), reclaimed=True)
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
        self.settle()
        try:
            pending = self.client.xpending_range(delivery.stream, GROUP, min=delivery.entry_id,
                                                 max=delivery.entry_id, count=1)
        except redis.ResponseError:  # no group: Redis lost its data, and the job with it
            return False
        return bool(pending) and as_text(pending[0]["consumer"]) == self.worker_id

    def release(self, delivery: Delivery) -> None:
        self.settle()
        self._release(keys=[delivery.stream],
                      args=[GROUP, delivery.entry_id, delivery.job_id, delivery.owner or ""])

    # Starting and acknowledging ---------------------------------------------------------------

    def start(self, deliveries: Sequence[Delivery], *, then_take: tuple[list[str], int] | None = None,
              ) -> tuple[list[Start], list[Delivery]]:
        """Start these jobs, in one round trip (one START script each, as their entries name
        their owners; an entry from before owners were named costs a read of the owner first),
        and, with ``then_take`` (streams, n), take up to n new entries of those streams in the
        same trip (an episode job's set-mates: a lone job pays no second trip to find none)."""
        self.settle()
        owners = [d.owner for d in deliveries]
        unknown = [i for i, owner in enumerate(owners) if owner is None]
        if unknown:
            pipe = self.client.pipeline(transaction=False)
            for i in unknown:
                pipe.hget(self.keys.job(deliveries[i].job_id), JobField.OWNER)
            for i, owner in zip(unknown, pipe.execute(), strict=True):
                owners[i] = as_text(owner) if owner is not None else None
        startable = [(d.job_id, owner) for d, owner in zip(deliveries, owners, strict=True)
                     if owner is not None]
        calls = [(self._start, *self._start_call(job_id, owner, now_ms())) for job_id, owner in startable]
        takes = then_take is not None and then_take[1] > 0
        if then_take is not None and takes:
            streams, count = then_take
            calls.append((self._take, streams, self._take_args(streams, count, None)))
        replies = self._scripts_in_one_trip(calls) if calls else []
        started = {job_id: self._started(reply)
                   for (job_id, _), reply in zip(startable, replies[:len(startable)], strict=True)}
        taken = _deliveries(replies[-1]) if takes else []
        return [started.get(d.job_id, ("missing", None)) for d in deliveries], taken

    def start_early(self, delivery: Delivery) -> StartedJob:
        """Start a job its entry carries (``Delivery.carried``) without waiting for the START
        reply, so it runs a round trip sooner: a lone job that woke an idle worker (one client's
        zero-shot overhead, 2.3-2.5 ms p50 with this path and 2.5-2.9 without, alternating).
        START goes first on the events' connection, so Redis runs it before any of the job's
        events, and its reply is read by the next write (``settle``) into ``early``. Until
        then nothing the job does reaches its record, and if START says it is not to run, its
        events and result are refused by its status (PUBLISH and FINISH_IMAGE write nothing
        for a job that is not running). Only ENQUEUE writes a carrying entry and a blocking read
        returns only new entries, so this START is the job's first: attempt 1, no image done."""
        carried, owner = delivery.carried, delivery.owner
        if carried is None or owner is None:
            raise ValueError(f"job {delivery.job_id}: its entry does not carry it")
        early = EarlyStart()
        keys, args = self._start_call(delivery.job_id, owner, now_ms())

        def read(reply: list[Any]) -> None:
            early.outcome = as_text(reply[0])

        self._events.send(keys, args, script=self._start, on_reply=read)
        return StartedJob(spec=JobSpec.model_validate_json(carried.spec), attempt=1,
                          queue_ms=float(max(0, now_ms() - carried.created_ms)),
                          done_images=frozenset(), images=carried.images, early=early)

    def confirmed(self, job: StartedJob) -> bool:
        """Whether the job is to run, as its START said (reading an early start's reply)."""
        if job.early is None:
            return True
        self.settle()
        return job.early.outcome == "run"

    def start_one(self, job_id: str, owner: str | None = None) -> Start:
        """``start`` for one job by its id (tests and tools that hold no delivery)."""
        return self.start([Delivery("", "", job_id, owner)])[0][0]

    def _start_call(self, job_id: str, owner: str, now: int) -> tuple[list[str], list[Any]]:
        """(keys, args) of the START script for one job."""
        k = self.keys
        dead = error_payload(job_id, "dead_letter",
                             f"the job failed {self.max_attempts} delivery attempts "
                             "(its workers died or timed out); it was moved to the dead-letter stream")
        expired = error_payload(job_id, "deadline_exceeded",
                                "the job waited past its deadline and was not started")
        return ([k.job(job_id), k.events(job_id), k.dead, k.open_jobs, k.inflight(owner),
                 k.results(job_id), k.images(job_id)],
                [job_id, self.worker_id, now, self.max_attempts, dumps(dead), dumps(expired)])

    @staticmethod
    def _started(reply: list[Any]) -> Start:
        outcome = as_text(reply[0])
        if outcome != "run":
            return outcome, None
        _, attempt, done, spec, created_ms, images = reply
        started_ms = now_ms()
        return "run", StartedJob(
            spec=JobSpec.model_validate_json(as_text(spec)), attempt=int(attempt),
            done_images=frozenset(int(as_text(i)) for i in done),
            queue_ms=float(max(0, started_ms - int(created_ms))),
            images={int(as_text(images[i])): bytes(images[i + 1]) for i in range(0, len(images), 2)})

    def ack(self, *deliveries: Delivery) -> list[str | None]:
        """Acknowledge (and delete) these finished entries; returns their jobs' statuses, read
        in the same round trip (what a run's metrics count)."""
        self.settle()
        pipe = self.client.pipeline(transaction=True)
        for delivery in deliveries:
            pipe.xack(delivery.stream, GROUP, delivery.entry_id)
            pipe.xdel(delivery.stream, delivery.entry_id)
            pipe.hget(self.keys.job(delivery.job_id), JobField.STATUS)
        replies = pipe.execute()
        return [as_text(status) if status is not None else None for status in replies[2::3]]

    # A job's events, results and failure -------------------------------------------------------

    def publish(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        """Publish an event now, without waiting for Redis's reply (see ``EventSender``)."""
        self._events.send([self.keys.job(job_id), self.keys.events(job_id)],
                          [event, dumps({"job_id": job_id, **data})])

    def settle(self) -> None:
        """Make sure every event published so far is in Redis (raises if one could not be)."""
        self._events.settle()

    def finish_image(self, spec: JobSpec, index: int, result: dict[str, Any],
                     log_entry: dict[str, Any] | None = None) -> tuple[bool, bool]:
        """Record one image's result, first writer wins; (written, job now complete). A
        ``log_entry`` goes to the owner's rectification log in the same step."""
        self.settle()
        keys, args = self._finish_call(spec, index, result, log_entry)
        written, final = self._finish_image(keys=keys, args=args)
        return bool(written), bool(final)

    def finish_images(self, results: list[tuple[JobSpec, int, dict[str, Any], NamedEvent | None]],
                      ) -> list[tuple[bool, bool]]:
        """Record ``results`` (spec, image, result, event before it or None) as ``finish_image``
        does, each image's event before its result, in one round trip for all (a zero-shot
        batch; under load each round trip waits for Redis to be scheduled)."""
        self.settle()
        calls = [(self._finish_image, *self._finish_call(spec, index, result, before=before))
                 for spec, index, result, before in results]
        return [(bool(written), bool(final)) for written, final in self._scripts_in_one_trip(calls)]

    def _finish_call(self, spec: JobSpec, index: int, result: dict[str, Any],
                     log_entry: dict[str, Any] | None = None,
                     before: NamedEvent | None = None) -> tuple[list[str], list[Any]]:
        """(keys, args) of the FINISH_IMAGE script for one image. Its events are the result
        with ``RESULT_EVENT_FIELDS`` around it (``QueueEvent.stored_result`` undoes that);
        ``before`` (event, data) is emitted just before, as ``publish`` would."""
        k = self.keys
        event = {"job_id": spec.job_id, "image": index, "n_images": spec.n_images, **result}
        # A classify answer is observed for drift in its tenant's and label set's scope.
        observation = observe(result, spec.labels) if spec.kind == "classify" else None
        scope = state_key_for(spec.owner, spec.label_set, spec.labels)
        drift = self.drift
        args = [spec.job_id, index, dumps(result), dumps({**event, "final": False}),
                dumps({**event, "final": True}), now_ms(), self.ttl_s,
                dumps(log_entry) if log_entry else "", RECTIFICATION_LOG_MAXLEN, self.log_ttl_s,
                observation.encode() if observation else "", scope, drift.reference_size,
                drift.window_size, drift.max_scopes_per_key, drift.ttl_s]
        if before is not None:
            args += [before[0], dumps({"job_id": spec.job_id, **before[1]})]
        return ([k.job(spec.job_id), k.results(spec.job_id), k.events(spec.job_id), k.open_jobs,
                 k.inflight(spec.owner), k.rectifications(spec.owner), k.drift_reference(scope),
                 k.drift_window(scope), k.drift_index(spec.owner)], args)

    def _scripts_in_one_trip(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        """Run (script, keys, args) calls in one pipelined round trip, by hash (redis-py's
        pipelined scripts cost a SCRIPT EXISTS round trip first). Several calls go in one
        MULTI/EXEC, so a reader blocked on a job's events wakes once, with all of them (a
        zero-shot event and its result), not once per event. A call whose script Redis does
        not have (lost in a restart, a failover or SCRIPT FLUSH, or never loaded yet) did
        nothing: its script is loaded and that call alone is run again, in order with the
        others that missed (as often as that keeps happening: ``scripts.NOSCRIPT_RETRIES``).
        The others of the trip did run: a trip may mix a cached script and a missing one (a
        START, and the TAKE of its set-mates that this worker used a moment before), and
        repeating the whole trip lost what the first TAKE took."""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(scripts.NOSCRIPT_RETRIES + 1):
            pipe = self.client.pipeline(transaction=len(todo) > 1)
            for i in todo:
                script, keys, args = calls[i]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            missed = []
            for i, reply in zip(todo, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, redis.exceptions.NoScriptError):
                    missed.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    replies[i] = reply
            if not missed:
                return replies
            if attempt == scripts.NOSCRIPT_RETRIES:
                raise redis.exceptions.NoScriptError("the queue's scripts keep disappearing from Redis")
            for script in {id(calls[i][0]): calls[i][0] for i in missed}.values():
                script.sha = self.client.script_load(script.script)
            todo = missed
        raise AssertionError("unreachable")

    def fail(self, spec: JobSpec, code: str, message: str, **extra: Any) -> bool:
        self.settle()
        k = self.keys
        payload = error_payload(spec.job_id, code, message, **extra)
        return bool(self._fail(keys=[k.job(spec.job_id), k.events(spec.job_id), k.open_jobs,
                                     k.inflight(spec.owner)],
                               args=[spec.job_id, now_ms(), dumps(payload)]))

    # The worker's presence -----------------------------------------------------------------------

    def heartbeat(self, info: dict[str, Any]) -> None:
        self.client.hset(self.keys.workers, self.worker_id,
                         json.dumps({**info, "last_seen_ms": now_ms()}))

    def unregister(self) -> None:
        self.settle()
        self.client.hdel(self.keys.workers, self.worker_id)


def _deliveries(taken: Any) -> list[Delivery]:
    """The deliveries in a TAKE script's reply (a flat list of stream, entry id, job id, owner;
    nil when it took nothing)."""
    if not taken:
        return []
    return [Delivery(as_text(taken[i]), as_text(taken[i + 1]), as_text(taken[i + 2]),
                     as_text(taken[i + 3]) or None) for i in range(0, len(taken), 4)]


def _carried(fields: dict[bytes, bytes]) -> CarriedJob | None:
    """The job a small job's entry carries (None: the entry names it only)."""
    spec = fields.get(EntryField.SPEC.encode())
    if spec is None:
        return None
    prefix = EntryField.IMAGE_PREFIX.encode()
    images = {int(key[len(prefix):]): bytes(value) for key, value in fields.items()
              if key.startswith(prefix)}
    return CarriedJob(bytes(spec), int(fields[EntryField.CREATED_MS.encode()]), images)


def _entry(fields: dict[bytes, bytes]) -> tuple[str, str | None]:
    """(job id, owner) of a stream entry, by field name."""
    owner = fields.get(EntryField.OWNER.encode())
    return as_text(fields[EntryField.JOB_ID.encode()]), as_text(owner) if owner else None
