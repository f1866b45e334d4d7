"""The API's event hub against a real Redis: a waiting classify hears its job's events through
pub/sub alone, nobody hears another job's, and what the hub missed while away is read from the
stream. The worker's side is the real Consumer; no HTTP here."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from service.api.event_hub import EventHub, Subscription
from service.api.sse import follow
from service.queue.connection import RedisTarget
from service.queue.consumer import Consumer
from service.queue.keys import Keys
from service.queue.producer import Producer
from service.queue.routing import worker_routes
from service.queue.schemas import JobSpec, QueueEvent, new_job_id, now_ms

TTL_S = 60


class CountingProducer(Producer):
    """The real producer, counting the reads of job streams."""

    stream_reads = 0

    async def events(self, job_id: str, after: str, block_ms: int | None) -> list[QueueEvent]:
        self.stream_reads += 1
        return await super().events(job_id, after, block_ms)


def spec_of(job_id: str, owner: str) -> JobSpec:
    created = now_ms()
    return JobSpec(job_id=job_id, owner=owner, method="zeroshot", labels=["a", "b"], n_images=1,
                   created_ms=created, deadline_ms=created + 60_000)


def run_job(url: str, keys: Keys, job_id: str, owner: str, label: str) -> None:
    """What a worker writes for a one-image job: started, a zero-shot event, the result."""
    with redis.Redis.from_url(url) as client:
        worker = Consumer(client, keys, "w1", ttl_s=TTL_S, max_attempts=3,
                          routes=worker_routes(["zeroshot"], "tta-tiny:random"))
        outcome, job = worker.start_one(job_id, owner)
        assert outcome == "run" and job is not None
        worker.publish(job_id, "zeroshot", {"image": 0, "top_k": [{"label": label, "score": 1.0}]})
        worker.finish_image(job.spec, 0, {"label": label})


async def live_hub(url: str, keys: Keys) -> EventHub:
    hub = EventHub(RedisTarget(url=url), keys)
    hub.start()
    for _ in range(500):
        if hub.live:
            return hub
        await asyncio.sleep(0.01)
    raise AssertionError("the hub did not subscribe")


async def collect(events: Any) -> list[QueueEvent]:
    seen = []
    async for event in events:
        if event is not None:
            seen.append(event)
            if event.is_terminal:
                return seen
    return seen


@pytest.fixture
def keys() -> Keys:
    return Keys(f"hub-{uuid.uuid4().hex[:8]}")


def test_a_follower_subscribed_before_its_job_hears_it_all_and_nothing_of_other_jobs(redis_server, keys):
    async def scenario() -> None:
        hub = await live_hub(redis_server.url, keys)
        async with aioredis.Redis.from_url(redis_server.url) as client:
            producer = CountingProducer(client, keys, ttl_s=TTL_S)
            mine, theirs = new_job_id(), new_job_id()
            async with hub.subscribe(mine) as subscription:
                queued = await producer.enqueue(spec_of(mine, "alice"), [b"img"], max_depth=10,
                                                max_inflight=10)
                await producer.enqueue(spec_of(theirs, "bob"), [b"img"], max_depth=10, max_inflight=10)
                following = asyncio.create_task(collect(
                    follow(producer, hub, mine, queued, 30, subscription)))
                await asyncio.to_thread(run_job, redis_server.url, keys, theirs, "bob", "bob's secret")
                await asyncio.to_thread(run_job, redis_server.url, keys, mine, "alice", "kettle")
                seen = await asyncio.wait_for(following, 10)
            assert [e.event for e in seen] == ["started", "zeroshot", "result"]
            assert {e.data["job_id"] for e in seen} == {mine}
            assert "bob's secret" not in repr(seen)
            assert seen[-1].data["label"] == "kettle" and seen[-1].is_terminal
            assert producer.stream_reads == 0  # pub/sub alone: the stream was never read
            stored = await producer.events(mine, queued, block_ms=None)  # ...and it is the record
            assert [(e.id, e.event, e.data) for e in stored] == [(e.id, e.event, e.data) for e in seen]
            assert hub.followers == 0
        await hub.close()

    asyncio.run(scenario())


def test_events_published_while_the_hub_was_away_are_read_from_the_stream(redis_server, keys):
    async def scenario() -> None:
        hub = await live_hub(redis_server.url, keys)
        async with aioredis.Redis.from_url(redis_server.url) as client:
            producer = CountingProducer(client, keys, ttl_s=TTL_S)
            job_id = new_job_id()
            queued = await producer.enqueue(spec_of(job_id, "alice"), [b"img"], max_depth=10, max_inflight=10)
            async with hub.subscribe(job_id) as subscription:
                following = asyncio.create_task(collect(
                    follow(producer, hub, job_id, queued, 30, subscription)))
                await asyncio.sleep(0.05)
                # The hub's connection drops; the job runs before it is back.
                assert await client.client_kill_filter(_type="pubsub") >= 1
                await asyncio.to_thread(run_job, redis_server.url, keys, job_id, "alice", "kettle")
                seen = await asyncio.wait_for(following, 10)
            assert [e.event for e in seen] == ["started", "zeroshot", "result"]
            assert producer.stream_reads >= 1  # caught up from the stream after reconnecting
            assert hub.live
        await hub.close()

    asyncio.run(scenario())


def test_a_follower_of_the_end_only_is_woken_once_with_every_event():
    async def scenario() -> None:
        subscription = Subscription(live=True, wake_on_terminal_only=True)
        waiting = asyncio.create_task(subscription.next("1-0", timeout_s=30))
        subscription.deliver([QueueEvent(id="2-0", event="started", data={"attempt": 1})])
        subscription.deliver([QueueEvent(id="3-0", event="zeroshot", data={})])
        await asyncio.sleep(0.05)
        assert not waiting.done()  # not woken by the events before the end
        subscription.deliver([QueueEvent(id="4-0", event="result", data={"final": True})])
        events = await asyncio.wait_for(waiting, 5)
        assert [e.event for e in events] == ["started", "zeroshot", "result"]

    asyncio.run(scenario())


async def every(events: Any) -> list[QueueEvent]:
    """All a follower yields (pings left out), to its own end: it must stop after the terminal
    event by itself."""
    return [event async for event in events if event is not None]


def publish_many(url: str, keys: Keys, job_id: str, owner: str, n_progress: int,
                 started: Any = None) -> None:
    """A worker's events for a one-image job with ``n_progress`` progress events, then the
    result; ``started`` (a threading.Event) is set once the first hundred are out."""
    with redis.Redis.from_url(url) as client:
        worker = Consumer(client, keys, "w1", ttl_s=TTL_S, max_attempts=3,
                          routes=worker_routes(["zeroshot"], "tta-tiny:random"))
        outcome, job = worker.start_one(job_id, owner)
        assert outcome == "run" and job is not None
        for step in range(n_progress):
            worker.publish(job_id, "progress", {"image": 0, "step": step})
            if step == 100 and started is not None:
                worker.settle()
                started.set()
        worker.finish_image(job.spec, 0, {"label": "kettle"})


def test_followers_get_every_event_after_their_cursor_exactly_once_whatever_the_backlog(redis_server, keys):
    """Followers join before, during and after a job of 3,000 events, and resume from ids
    throughout it: each receives every event after its cursor, once, in order (a first page of
    the stream used to be all a late follower read before switching to live events)."""
    import threading

    async def scenario() -> None:
        hub = await live_hub(redis_server.url, keys)
        async with aioredis.Redis.from_url(redis_server.url) as client:
            producer = Producer(client, keys, ttl_s=TTL_S)
            job_id = new_job_id()
            queued = await producer.enqueue(spec_of(job_id, "alice"), [b"img"], max_depth=10, max_inflight=10)
            early = asyncio.create_task(every(follow(producer, hub, job_id, "0", 30)))
            hundred = threading.Event()
            running = asyncio.create_task(asyncio.to_thread(
                publish_many, redis_server.url, keys, job_id, "alice", 3000, hundred))
            await asyncio.to_thread(hundred.wait, 10)
            await asyncio.sleep(0.05)  # hundreds more are in the stream before it joins
            joined_midway = asyncio.create_task(every(follow(producer, hub, job_id, "0", 30)))
            await running
            everything = [e async for page in producer.event_pages(job_id, "0") for e in page]
            assert [e.event for e in everything][:2] == ["queued", "started"]
            assert everything[-1].is_terminal and len(everything) == 3003
            assert everything[0].id == queued
            followers = {"from the start": await asyncio.wait_for(early, 30),
                         "joined midway": await asyncio.wait_for(joined_midway, 30),
                         "after the end": await every(follow(producer, hub, job_id, "0", 30))}
            for name, seen in followers.items():
                assert [e.id for e in seen] == [e.id for e in everything], name
            for cut in (1, 99, 100, 101, 499, 500, 501, 1234, 3001, 3002):
                resumed = await every(follow(producer, hub, job_id, everything[cut - 1].id, 30))
                assert [e.id for e in resumed] == [e.id for e in everything[cut:]], cut
            assert hub.followers == 0
        await hub.close()

    asyncio.run(scenario())
