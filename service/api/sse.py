"""Following a job's events: as server-sent events, or until its last one (a waiting classify).
Event ids are Redis stream ids, so a client that reconnects with ``Last-Event-ID`` to any API
replica resumes exactly after the last event it saw. A comment line is sent while nothing
happens, to keep proxies from closing the stream. Waiting holds no Redis connection (see
``service.api.event_hub``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import nullcontext

from service.api.event_hub import EventHub, Subscription
from service.queue.producer import Producer
from service.queue.schemas import FINISHED, QueueEvent


def format_event(event: QueueEvent) -> str:
    return f"id: {event.id}\nevent: {event.event}\ndata: {json.dumps(event.data)}\n\n"


async def follow(producer: Producer, hub: EventHub, job_id: str, after: str, ping_s: float,
                 subscription: Subscription | None = None) -> AsyncIterator[QueueEvent | None]:
    """The job's events after ``after`` as they come, until its terminal event; None each
    ``ping_s`` without one. Ends early if the job expired, or finished before ``after``.
    ``subscription``: the hub's, made before the job was queued (a waiting classify): it hears
    every event of the job, so the stream is not read first (a round trip saved)."""
    last = after
    async with nullcontext(subscription) if subscription else hub.subscribe(job_id) as followed:
        heard_all = subscription is not None and followed.live
        events: list[QueueEvent] | None = (
            [] if heard_all else await producer.events(job_id, last, block_ms=None))
        check_when_quiet = not heard_all
        while True:
            for event in events or []:
                yield event
                last = event.id
                if event.is_terminal:
                    return
            if not events and check_when_quiet:  # the job may have expired or ended before ``after``
                status = await producer.status(job_id)
                if status is None:
                    return  # expired
                if status in FINISHED:
                    events = await producer.events(job_id, last, block_ms=None)
                    if events:
                        continue  # its last events landed just now
                    return  # finished, and the caller has seen everything up to its end
            check_when_quiet = True
            events = await followed.next(last, ping_s)
            if events is None:
                yield None  # a ping period without events
            if not events:  # that, or the hub was away meanwhile: the stream has what it missed
                events = await producer.events(job_id, last, block_ms=None)


async def stream_events(producer: Producer, hub: EventHub, job_id: str, after: str,
                        ping_s: float) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    async for event in follow(producer, hub, job_id, after, ping_s):
        yield ": ping\n\n" if event is None else format_event(event)
