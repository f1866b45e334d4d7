"""Server-sent events from a job's event stream. Event ids are Redis stream ids, so a client
that reconnects with ``Last-Event-ID`` to any API replica resumes exactly after the last event
it saw. A comment line is sent while nothing happens, to keep proxies from closing the stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from service.queue.producer import Producer
from service.queue.schemas import QueueEvent


def format_event(event: QueueEvent) -> str:
    return f"id: {event.id}\nevent: {event.event}\ndata: {json.dumps(event.data)}\n\n"


async def stream_events(producer: Producer, job_id: str, after: str, ping_s: float) -> AsyncIterator[str]:
    last = after
    yield "retry: 1000\n\n"
    while True:
        events = await producer.events(job_id, last, block_ms=int(ping_s * 1000))
        if not events:
            if not await producer.events_exist(job_id):
                return  # the job expired while we waited
            yield ": ping\n\n"
            continue
        for event in events:
            yield format_event(event)
            last = event.id
            if event.is_terminal:
                return
