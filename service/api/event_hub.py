"""One reader per API process for the event streams of every job someone is waiting on.

Each SSE follower or waiting ``POST /v1/classify`` used to hold a Redis connection in a blocking
XREAD, so about a hundred waiters exhausted the pool and every other request (health checks
included) got 503. Now waiters hold no connection while they wait: one background task blocks
in a single XREAD over all followed streams and wakes the waiters of the streams that moved;
the hub hands them the events it read. A new subscription interrupts the blocked read (CLIENT
UNBLOCK) so it is included at once, not after the timeout; it stays in the read until its
follower is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.queue.keys import Keys
from service.queue.schemas import QueueEvent, as_text, parse_event

log = logging.getLogger(__name__)

READ_BLOCK_MS = 5000
RETRY_S = 0.5
UNBLOCK_TRIES = 50


class EventHub:
    def __init__(self, url: str, keys: Keys) -> None:
        # A connection of its own: it spends its life blocked in XREAD.
        self.reader: Any = aioredis.Redis.from_url(url, socket_connect_timeout=2, max_connections=1)
        self.control: Any = aioredis.Redis.from_url(url, socket_connect_timeout=2, max_connections=2)
        self.keys = keys
        self.cursors: dict[str, str] = {}
        """Per followed job: the newest event id the hub has seen (or a waiter's start)."""
        self.waiters: dict[str, set[Subscription]] = {}
        self._changed = asyncio.Event()
        self._reading: frozenset[str] = frozenset()
        self._reader_id: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def followers(self) -> int:
        return sum(len(events) for events in self.waiters.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.reader.aclose()
        await self.control.aclose()

    @asynccontextmanager
    async def subscribe(self, job_id: str, after: str) -> AsyncIterator[Subscription]:
        """Follow one job's stream for as long as the context lasts: the hub keeps it in its
        read and hands each subscription the events it reads (so one XREAD serves every
        waiting request, and nothing is read twice). Unless the subscription is the job's
        ``first`` (the hub then reads from ``after`` itself), read the stream once after
        subscribing: events the hub read before it are not handed over."""
        # First: no follower before it, nor a read in flight that still covers its stream
        # from an earlier follower's cursor (that read's events would start past ``after``).
        subscription = Subscription(first=job_id not in self.cursors and job_id not in self._reading)
        self.waiters.setdefault(job_id, set()).add(subscription)
        self.cursors.setdefault(job_id, after)
        try:
            if job_id not in self._reading:
                self._changed.set()
                await self._interrupt(job_id)
            yield subscription
        finally:
            waiting = self.waiters.get(job_id)
            if waiting is not None:
                waiting.discard(subscription)
                if not waiting:
                    del self.waiters[job_id]
                    self.cursors.pop(job_id, None)

    async def _interrupt(self, job_id: str) -> None:
        """Make the blocked XREAD return now, so the next one includes the new stream. The
        read may have been sent but not yet be blocked in Redis (UNBLOCK answers 0): retry."""
        for _ in range(UNBLOCK_TRIES):
            if self._reader_id is None or not self._reading or job_id in self._reading:
                return
            try:
                if await self.control.execute_command("CLIENT", "UNBLOCK", self._reader_id):
                    return
            except RedisError as exc:  # the read times out on its own anyway
                log.debug("event hub: unblock failed (%s)", exc)
                return
            await asyncio.sleep(0.001)

    async def _run(self) -> None:
        while True:
            if not self.waiters:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                await self._read_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub must outlive any one failure
                # Redis away (or a bug): waiters fall back to their ping-period checks meanwhile.
                log.warning("event hub: read failed (%s: %s); retrying", type(exc).__name__, exc)
                self._reader_id = None
                self._reading = frozenset()
                await asyncio.sleep(RETRY_S)

    async def _read_once(self) -> None:
        if self._reader_id is None:
            self._reader_id = int(await self.reader.client_id())
        jobs = {self.keys.events(job): job for job in self.waiters}
        streams = {stream: self.cursors.get(job, "0") for stream, job in jobs.items()}
        self._reading = frozenset(jobs.values())
        self._changed.clear()
        try:
            reply = await self.reader.xread(streams, block=READ_BLOCK_MS, count=100)
        finally:
            self._reading = frozenset()
        for stream, entries in reply or []:
            job = jobs[as_text(stream)]
            if entries and job in self.waiters:
                self.cursors[job] = as_text(entries[-1][0])
                events = [parse_event(entry_id, fields) for entry_id, fields in entries]
                for subscription in self.waiters[job]:
                    subscription.deliver(events)


def _stream_id(value: str) -> tuple[int, int]:
    millis, _, sequence = value.partition("-")
    return int(millis or 0), int(sequence or 0)


class Subscription:
    """The events the hub read for one follower, until it takes them."""

    def __init__(self, first: bool) -> None:
        self.first = first
        """The job's first follower: the hub's read of its stream starts where this one does."""
        self._events: list[QueueEvent] = []
        self._arrived = asyncio.Event()

    def deliver(self, events: list[QueueEvent]) -> None:
        self._events.extend(events)
        self._arrived.set()

    async def next(self, after: str, timeout_s: float) -> list[QueueEvent] | None:
        """Events after ``after`` as they arrive (waiting up to ``timeout_s`` for the first);
        None on timeout."""
        while True:
            events = [e for e in self._events if _stream_id(e.id) > _stream_id(after)]
            self._events.clear()
            self._arrived.clear()
            if events:
                return events
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
            except asyncio.TimeoutError:
                return None
