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
    """Every event of the job after ``after``, exactly once and in order, as they come, until its
    terminal event; None each ``ping_s`` without one. Ends early if the job expired, or finished
    before ``after``.

    The hub's subscription is made first, then the stream is read to its end (however many
    events it holds: a late follower or a resume may have thousands behind it); from then on
    every event reaches the subscription, which is read until it goes quiet or asks for a
    catch-up (the hub was away), when the stream is read to its end again. ``subscription``:
    the hub's, made before the job was queued (a waiting classify): it hears every event of the
    job, so the stream is not read first (a round trip saved)."""
    last = after
    async with nullcontext(subscription) if subscription else hub.subscribe(job_id) as followed:
        read_stream = not (subscription is not None and followed.live)
        while True:
            if read_stream:
                # Twice at most: to the stream's end, and once more if the job turns out to be
                # finished (its last events may have landed after the first read).
                for finished in (False, True):
                    async for page in producer.event_pages(job_id, last):
                        for event in page:
                            yield event
                            last = event.id
                            if event.is_terminal:
                                return
                    if finished:
                        return  # it ended before ``after``, and all since was seen
                    status = await producer.status(job_id)
                    if status is None:
                        return  # expired
                    if status not in FINISHED:
                        break
            events = await followed.next(last, ping_s)
            if events is None:
                yield None  # a ping period without events
            # Quiet, or the hub was away meanwhile: the stream has what it may have missed.
            read_stream = not events
            for event in events or []:
                yield event
                last = event.id
                if event.is_terminal:
                    return


async def stream_events(producer: Producer, hub: EventHub, job_id: str, after: str,
                        ping_s: float) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    async for event in follow(producer, hub, job_id, after, ping_s):
        yield ": ping\n\n" if event is None else format_event(event)
