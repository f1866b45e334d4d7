"""One reader per API process for the events of every job someone is waiting on.

Every script that appends an event to a job's stream also publishes it (Redis pub/sub, on a
channel named after the stream: ``service.queue.scripts``; all but "queued", which only the
job's own waiting classify could hear, and it has it from the enqueue). The hub holds one connection
subscribed to all of those channels and hands each event to the waiters of its job; events of
jobs nobody here waits on are dropped unread. Waiters hold no Redis connection while they wait
(about a hundred blocking readers once exhausted the pool), and following a job costs no
command: an earlier hub blocked in one XREAD over the followed streams and had to interrupt it
(CLIENT UNBLOCK, then a new XREAD) for every new follower, two commands per request.

Pub/sub is not durable, so the stream stays the record: a follower reads it once after
subscribing, unless it subscribed before its job existed (a waiting classify), and again
whenever the hub was away (it reconnects and tells every follower to catch up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from service.queue.connection import RedisTarget
from service.queue.keys import Keys
from service.queue.schemas import QueueEvent, parse_event_message

log = logging.getLogger(__name__)

RETRY_S = 0.5


class EventHub:
    def __init__(self, target: RedisTarget, keys: Keys) -> None:
        # A connection of its own: it spends its life subscribed.
        self.client: Any = target.async_client(max_connections=1)
        self.keys = keys
        self.waiters: dict[str, set[Subscription]] = {}
        self.live = False
        """Subscribed in Redis now: every event published from here on reaches the hub."""
        self._task: asyncio.Task[None] | None = None

    @property
    def followers(self) -> int:
        return sum(len(subscriptions) for subscriptions in self.waiters.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.aclose()

    @asynccontextmanager
    async def subscribe(self, job_id: str, *, until_terminal: bool = False) -> AsyncIterator[Subscription]:
        """Receive the job's events as they are published, for as long as the context lasts
        (no Redis command: the hub already receives every job's events). ``until_terminal``:
        the follower only wants the job's end (a waiting classify), so it is woken only then
        (the events before it are kept for it)."""
        subscription = Subscription(live=self.live, wake_on_terminal_only=until_terminal)
        self.waiters.setdefault(job_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            waiting = self.waiters.get(job_id)
            if waiting is not None:
                waiting.discard(subscription)
                if not waiting:
                    del self.waiters[job_id]

    async def _run(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.psubscribe(self.keys.events_pattern)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub must outlive any one failure
                # Redis away (or a bug): followers fall back to reading their streams.
                log.warning("event hub: subscription failed (%s: %s); retrying", type(exc).__name__, exc)
                self._lost()
                await asyncio.sleep(RETRY_S)
            finally:
                await pubsub.aclose()

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "pmessage":
            job_id = self.keys.job_of_events(message["channel"])
            subscriptions = self.waiters.get(job_id) if job_id else None
            if subscriptions:
                event = parse_event_message(message["data"])
                for subscription in subscriptions:
                    subscription.deliver([event])
        elif message["type"] == "psubscribe":
            # Events published while the hub was not subscribed reached nobody here: every
            # follower made meanwhile (or before a reconnect) reads its stream again.
            self.live = True
            for subscriptions in self.waiters.values():
                for subscription in subscriptions:
                    subscription.catch_up()

    def _lost(self) -> None:
        self.live = False
        for subscriptions in self.waiters.values():
            for subscription in subscriptions:
                subscription.live = False


def _stream_id(value: str) -> tuple[int, int]:
    millis, _, sequence = value.partition("-")
    return int(millis or 0), int(sequence or 0)


class Subscription:
    """The events the hub received for one follower, until it takes them."""

    def __init__(self, live: bool, wake_on_terminal_only: bool = False) -> None:
        self.live = live
        """The hub was subscribed when this was made and has not lost its connection since:
        every event published after this was made reaches it."""
        self.stale = False
        """Events may have been missed (the hub was away): read the stream to catch up."""
        self.wake_on_terminal_only = wake_on_terminal_only
        self._events: list[QueueEvent] = []
        self._arrived = asyncio.Event()

    def deliver(self, events: list[QueueEvent]) -> None:
        self._events.extend(events)
        if not self.wake_on_terminal_only or any(event.is_terminal for event in events):
            self._arrived.set()

    def catch_up(self) -> None:
        self.stale = True
        self._arrived.set()

    async def next(self, after: str, timeout_s: float) -> list[QueueEvent] | None:
        """Events after ``after`` as they arrive (waiting up to ``timeout_s`` for the first, or
        for the terminal one); None on timeout, and ``[]`` when the follower must read its
        stream to catch up (what was kept here is in it too)."""
        while True:
            if self.stale:
                self.stale = False
                self._events.clear()
                return []
            if not self.wake_on_terminal_only or any(e.is_terminal for e in self._events):
                events = [e for e in self._events if _stream_id(e.id) > _stream_id(after)]
                self._events.clear()
                if events:
                    return events
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
            except TimeoutError:
                return None
