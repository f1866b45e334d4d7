"""The queue's state transitions against a real Redis: idempotent results, dead letters,
deadlines, leases and hand-back. No HTTP and no models here."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import redis
import redis.asyncio as aioredis

from contract.errors import QueueFullError, TooManyInflightError
from service.queue import producer as producer_module
from service.queue import scripts
from service.queue.consumer import Consumer, Delivery
from service.queue.keys import Keys
from service.queue.producer import Producer
from service.queue.routing import route, worker_routes
from service.queue.schemas import JobSpec, new_job_id, now_ms, parse_event

TTL_S = 60


@pytest.fixture
def keys() -> Keys:
    return Keys(f"q-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(redis_server):  # type: ignore[no-untyped-def]
    with redis.Redis.from_url(redis_server.url) as connection:
        yield connection


def consumer(client, keys: Keys, name: str, max_attempts: int = 3) -> Consumer:  # type: ignore[no-untyped-def]
    worker = Consumer(client, keys, name, ttl_s=TTL_S, max_attempts=max_attempts,
                      routes=worker_routes(["zeroshot"], "tta-tiny:random"))
    worker.ensure_group()
    return worker


def submit(url: str, keys: Keys, n_images: int = 1, owner: str = "alice", deadline_s: float = 60,
           max_depth: int = 100, max_inflight: int = 100, method: str = "zeroshot",
           model: str | None = None) -> JobSpec:
    created = now_ms()
    spec = JobSpec(job_id=new_job_id(), owner=owner, method=method, model=model, labels=["a", "b"],
                   n_images=n_images, created_ms=created, deadline_ms=created + int(deadline_s * 1000))

    async def run() -> None:
        async with aioredis.Redis.from_url(url) as connection:
            producer = Producer(connection, keys, ttl_s=TTL_S)
            await producer.enqueue(spec, [b"img"] * n_images, max_depth=max_depth, max_inflight=max_inflight)

    asyncio.run(run())
    return spec


def events(client, keys: Keys, job_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [parse_event(i, f).event for i, f in client.xrange(keys.events(job_id))]


def test_first_result_wins_and_is_published_once(redis_server, client, keys):
    spec = submit(redis_server.url, keys)
    a, b = consumer(client, keys, "a"), consumer(client, keys, "b")
    assert a.start_one(spec.job_id)[0] == "run"
    assert a.finish_image(spec, 0, {"label": "a"}, {"after": "a"}) == (True, True)
    # A redelivered run loses, and neither its result nor its log entry is written.
    assert b.finish_image(spec, 0, {"label": "b"}, {"after": "b"}) == (False, False)
    log = client.xrange(keys.rectifications("alice"))
    assert [entry[1][b"entry"] for entry in log] == [b'{"after":"a"}']  # logged once, by the winner
    assert events(client, keys, spec.job_id) == ["queued", "started", "result"]
    assert client.hget(keys.results(spec.job_id), "0") == b'{"label":"a"}'
    assert b.start_one(spec.job_id)[0] == "finished"  # and a finished job is never started again
    assert client.zcard(keys.open_jobs) == 0 and client.zcard(keys.inflight("alice")) == 0


def test_an_event_written_with_a_result_is_emitted_as_publish_would(redis_server, client, keys):
    """A zero-shot batch writes each image's "zeroshot" event with its result: before it, also
    when another worker's result for that image stands (as a separate publish was), never for
    a finished job; on the events channel too."""
    two = submit(redis_server.url, keys, n_images=2)
    done, failed = submit(redis_server.url, keys), submit(redis_server.url, keys)
    a, b = consumer(client, keys, "a"), consumer(client, keys, "b")
    for spec in (two, done, failed):
        assert a.start_one(spec.job_id)[0] == "run"
    a.finish_image(two, 0, {"label": "a"})  # the other worker's result for image 0 stands
    a.finish_image(done, 0, {"label": "a"})
    a.fail(failed, "bad", "it failed")
    pubsub = client.pubsub()
    pubsub.subscribe(keys.events(two.job_id))
    pubsub.get_message(timeout=1)  # (the subscription's confirmation)
    zeroshot = ("zeroshot", {"image": 0, "top_k": [{"label": "x", "score": 1.0}]})
    written = b.finish_images([(two, 0, {"label": "b"}, zeroshot), (two, 1, {"label": "b"}, None),
                               (done, 0, {"label": "b"}, zeroshot), (failed, 0, {"label": "b"}, zeroshot)])
    assert written == [(False, False), (True, True), (False, False), (False, False)]
    assert events(client, keys, two.job_id) == ["queued", "started", "result", "zeroshot", "result"]
    assert events(client, keys, done.job_id) == ["queued", "started", "result"]
    assert events(client, keys, failed.job_id) == ["queued", "started", "error"]
    heard = pubsub.get_message(timeout=1)
    assert heard is not None and b"\nzeroshot\n" in heard["data"]
    assert json.loads(heard["data"].split(b"\n", 2)[2]) == {"job_id": two.job_id, **zeroshot[1]}
    pubsub.close()


def test_a_start_carries_the_unfinished_images_and_needs_no_read_before_it(redis_server, client, keys):
    """The entry names the job's owner, so a worker starts it in one round trip; the start
    hands over the images not finished yet. An entry from before owners were in it (a queue
    upgraded in place) still starts: its owner is read from the job."""
    spec = submit(redis_server.url, keys, n_images=3)
    worker = consumer(client, keys, "a")
    delivery = worker.read_new(block_ms=100)[0]
    assert (delivery.job_id, delivery.owner) == (spec.job_id, "alice")
    outcome, job = worker.start_one(delivery.job_id, delivery.owner)
    assert outcome == "run" and job is not None and job.spec == spec
    assert job.images == {0: b"img", 1: b"img", 2: b"img"} and job.queue_ms >= 0
    worker.finish_image(spec, 1, {"label": "a"})
    client.hdel(keys.images(spec.job_id), "2")  # expired meanwhile
    old_format = client.xadd(delivery.stream, {"job_id": spec.job_id})
    again = [d for d in worker.read_new(block_ms=100) if d.entry_id == old_format.decode()]
    assert again and again[0].owner is None
    outcome, job = worker.start_one(again[0].job_id, again[0].owner)
    assert outcome == "run" and job is not None
    assert (job.attempt, job.done_images, job.images) == (2, frozenset({1}), {0: b"img"})


def test_a_job_goes_to_the_dead_letter_stream_after_its_attempts(redis_server, client, keys):
    spec = submit(redis_server.url, keys)
    worker = consumer(client, keys, "a", max_attempts=2)
    assert [worker.start_one(spec.job_id)[0] for _ in range(3)] == ["run", "run", "dead"]
    assert client.xlen(keys.dead) == 1
    assert client.hget(keys.job(spec.job_id), "status") == b"dead"
    last = parse_event(*client.xrevrange(keys.events(spec.job_id), count=1)[0])
    assert last.event == "error" and last.data["code"] == "dead_letter"
    assert worker.finish_image(spec, 0, {"label": "late"}) == (False, False)


def test_an_expired_job_is_not_started(redis_server, client, keys):
    spec = submit(redis_server.url, keys, deadline_s=0.001)
    time.sleep(0.01)
    outcome, job = consumer(client, keys, "a").start_one(spec.job_id)
    assert (outcome, job) == ("expired", None)
    assert events(client, keys, spec.job_id) == ["queued", "error"]


def test_lease_renewal_keeps_a_long_job_from_being_reclaimed(redis_server, client, keys):
    spec = submit(redis_server.url, keys)
    holder, other = consumer(client, keys, "holder"), consumer(client, keys, "other")
    delivery = holder.read_new(block_ms=100)[0]
    assert delivery.job_id == spec.job_id
    for _ in range(3):
        time.sleep(0.1)
        assert holder.renew([delivery]) == []
        assert holder.owns(delivery)
        assert other.reclaim(min_idle_ms=150) == []
    time.sleep(0.2)  # the holder stops renewing (it died): now the other worker takes over
    reclaimed = other.reclaim(min_idle_ms=150)
    assert [d.job_id for d in reclaimed] == [spec.job_id] and reclaimed[0].reclaimed
    # a late holder does not take it back, and learns that it lost it
    assert holder.renew([delivery]) == [delivery]
    assert not holder.owns(delivery) and other.owns(reclaimed[0])


def test_release_hands_an_unstarted_job_back(redis_server, client, keys):
    spec = submit(redis_server.url, keys)
    a, b = consumer(client, keys, "a"), consumer(client, keys, "b")
    delivery = a.read_new(block_ms=100)[0]
    a.release(delivery)
    assert [d.job_id for d in b.read_new(block_ms=100)] == [spec.job_id]


def test_partial_results_survive_a_redelivery(redis_server, client, keys):
    spec = submit(redis_server.url, keys, n_images=3)
    first, second = consumer(client, keys, "first"), consumer(client, keys, "second")
    first.start_one(spec.job_id)
    assert first.finish_image(spec, 0, {"label": "x"}) == (True, False)
    outcome, job = second.start_one(spec.job_id)
    assert outcome == "run" and job is not None and job.attempt == 2 and job.done_images == {0}


def test_enqueue_limits_are_atomic(redis_server, keys):
    submit(redis_server.url, keys, owner="alice", max_inflight=1)
    with pytest.raises(TooManyInflightError):
        submit(redis_server.url, keys, owner="alice", max_inflight=1)
    submit(redis_server.url, keys, owner="bob", max_depth=2)
    with pytest.raises(QueueFullError) as info:
        submit(redis_server.url, keys, owner="carol", max_depth=2)
    assert info.value.retry_after_s >= 1


def test_jobs_reach_only_workers_that_serve_their_method_and_model(redis_server, client, keys):
    plain = Consumer(client, keys, "plain", ttl_s=TTL_S, max_attempts=3,
                     routes=worker_routes(["zeroshot", "tpt"], "small"))
    rich = Consumer(client, keys, "rich", ttl_s=TTL_S, max_attempts=3,
                    routes=worker_routes(["zeroshot", "tpt", "mllm"], "large"))
    plain.ensure_group()
    rich.ensure_group()
    mllm = submit(redis_server.url, keys, method="mllm")
    pinned = submit(redis_server.url, keys, method="tpt", model="large")
    assert plain.read_new(block_ms=50) == []  # neither is for it
    taken = {rich.read_new(block_ms=50)[0].job_id for _ in range(2)}
    assert taken == {mllm.job_id, pinned.job_id}
    anyone = submit(redis_server.url, keys, method="tpt")
    assert [d.job_id for d in plain.read_new(block_ms=50)] == [anyone.job_id]


def test_a_worker_takes_one_job_at_a_time_from_several_streams(redis_server, client, keys):
    worker = consumer(client, keys, "one")
    jobs = [submit(redis_server.url, keys, model=model).job_id for model in (None, "tta-tiny:random")]
    first, second = worker.read_new(block_ms=50), worker.read_new(block_ms=50)
    assert len(first) == len(second) == 1  # not one per stream: the other job stays for others
    assert {first[0].job_id, second[0].job_id} == set(jobs)


def test_a_read_takes_batch_mates_only_behind_a_job_of_a_batch_stream(redis_server, client, keys):
    """``mates``: a read whose first job is of a batch stream takes up to n more of the batch
    streams (pinned and unpinned alike) in the same trip; one whose first job is not takes
    that job alone, though batch jobs are queued."""
    worker = Consumer(client, keys, "w", ttl_s=TTL_S, max_attempts=3,
                      routes=worker_routes(["zeroshot", "tpt"], "tiny"))
    worker.ensure_group()
    batch = [keys.jobs(route("zeroshot", pin)) for pin in (None, "tiny")]
    tpt = [submit(redis_server.url, keys, method="tpt").job_id for _ in range(2)]
    zeroshot = [submit(redis_server.url, keys, model=model).job_id for model in (None, "tiny", None, None)]
    # Two streams in turn: one of these reads starts at tpt's stream, the other at zero-shot's.
    streams = [keys.jobs("tpt"), batch[0]]
    reads = sorted(([d.job_id for d in worker.read_new(None, streams, mates=(batch, 2))]
                    for _ in range(2)), key=len)
    assert reads[0] == [tpt[0]]  # alone
    assert reads[1] == zeroshot[:1] + zeroshot[2:4]  # the pinned one is not in ``streams``
    # Mates cross the batch streams, pinned and unpinned: every queued zero-shot job in one read.
    more = [submit(redis_server.url, keys, model="tiny").job_id, submit(redis_server.url, keys).job_id]
    taken = worker.read_new(None, batch, mates=(batch, 5))
    assert sorted(d.job_id for d in taken) == sorted([zeroshot[1], *more])


def test_a_batch_is_started_and_finished_in_bulk_even_after_redis_lost_its_scripts(
        redis_server, client, keys):
    """The worker's bulk path (several jobs started, then their events and results written
    in one trip each) gives what one-by-one gives, also right after Redis forgot its cached
    scripts (as after a restart)."""
    specs = [submit(redis_server.url, keys) for _ in range(3)]
    worker = consumer(client, keys, "a")
    taken = worker.read_new(None, count=5)
    assert sorted(d.job_id for d in taken) == sorted(s.job_id for s in specs)  # one trip, all three
    client.script_flush()
    started, _ = worker.start([Delivery("", "", job_id, "alice")
                               for job_id in [*(s.job_id for s in specs), "no-such-job"]])
    assert [outcome for outcome, _ in started] == ["run", "run", "run", "missing"]
    client.script_flush()
    written = worker.finish_images([(s, 0, {"label": "a"}, ("zeroshot", {"image": 0})) for s in specs])
    assert written == [(True, True)] * 3
    for spec in specs:
        assert events(client, keys, spec.job_id) == ["queued", "started", "zeroshot", "result"]
    assert worker.ack(*taken) == ["done"] * 3
    assert client.xlen(taken[0].stream) == 0


def test_a_start_whose_script_is_gone_keeps_the_set_mates_its_take_took(redis_server, client, keys):
    """A trip that mixes a missing script (START, not yet loaded) with a cached one (TAKE,
    which the worker's read just used): the TAKE ran, so only the START is run again, and the
    set-mates it took come back (repeating the whole trip returned none and left them held)."""
    specs = [submit(redis_server.url, keys) for _ in range(3)]
    worker = consumer(client, keys, "a")
    (first,) = worker.read_new(None, count=1)
    client.script_flush()
    client.script_load(scripts.TAKE)
    started, mates = worker.start([first], then_take=([first.stream], 5))
    assert [outcome for outcome, _ in started] == ["run"]
    assert sorted(m.job_id for m in mates) == sorted(s.job_id for s in specs if s.job_id != first.job_id)
    assert client.xpending(first.stream, "workers")["pending"] == 3


def test_events_are_sent_without_waiting_and_nothing_overtakes_them(redis_server, client, keys):
    """``publish`` writes an event at once (it is in Redis before anything settles it) and
    reads its reply later; the result written next still comes after every event, also when
    Redis forgot its scripts in between (the events are then run again, in order)."""
    spec = submit(redis_server.url, keys)
    worker = consumer(client, keys, "a")
    assert worker.start_one(spec.job_id)[0] == "run"
    client.script_load(scripts.PUBLISH)  # as a running Redis has it (an earlier test may flush)
    worker.publish(spec.job_id, "zeroshot", {"image": 0})
    deadline = time.monotonic() + 5
    while events(client, keys, spec.job_id)[-1] != "zeroshot" and time.monotonic() < deadline:
        time.sleep(0.01)  # streamed as it happens, unsettled (no reply read yet)
    assert events(client, keys, spec.job_id) == ["queued", "started", "zeroshot"]
    client.script_flush()
    for step in range(3):
        worker.publish(spec.job_id, "progress", {"image": 0, "step": step})
    assert worker.finish_image(spec, 0, {"label": "a"}) == (True, True)
    assert events(client, keys, spec.job_id) == ["queued", "started", "zeroshot", "progress",
                                                 "progress", "progress", "result"]
    steps = [parse_event(i, f).data.get("step") for i, f in client.xrange(keys.events(spec.job_id))]
    assert steps[3:6] == [0, 1, 2]


def test_a_lost_connection_surfaces_at_the_next_write_and_the_sender_recovers(redis_server, client, keys):
    """An event whose reply cannot be read (its connection was killed) fails the next write
    with a RedisError, as a blocking publish would have (the worker then retries the job);
    the next event goes out on a new connection."""
    spec = submit(redis_server.url, keys)
    worker = consumer(client, keys, "a")
    assert worker.start_one(spec.job_id)[0] == "run"
    worker.publish(spec.job_id, "progress", {"image": 0, "step": 0})
    worker.settle()
    client.client_kill_filter(_type="normal", skipme=True)  # every connection but this test's
    with pytest.raises(redis.RedisError):  # (the write itself may fail, or its reply)
        worker.publish(spec.job_id, "progress", {"image": 0, "step": 1})
        worker.settle()
    worker.publish(spec.job_id, "progress", {"image": 0, "step": 2})
    assert worker.finish_image(spec, 0, {"label": "a"}) == (True, True)
    assert events(client, keys, spec.job_id)[-2:] == ["progress", "result"]


def test_stream_entries_are_read_by_field_name_not_position(redis_server, client, keys):
    """The job id and owner are found by their names (``service.queue.fields``) whatever the
    order of an entry's fields, by the script that takes jobs under load and by the blocking
    read alike."""
    spec = submit(redis_server.url, keys)
    worker = consumer(client, keys, "a")
    (first,) = worker.read_new(None)
    stream = first.stream
    client.xadd(stream, {"owner": "alice", "note": "x", "job_id": spec.job_id})  # fields reordered
    (taken,) = worker.read_new(None)
    assert (taken.job_id, taken.owner) == (spec.job_id, "alice")
    later = threading.Timer(0.2, lambda: client.xadd(stream, {"owner": "bob", "job_id": "j2"}))
    later.start()
    (woken,) = worker.read_new(5000)
    later.join()
    assert woken.waited and (woken.job_id, woken.owner) == ("j2", "bob")


def woken_by(worker: Consumer, submitting: Callable[[], JobSpec]) -> tuple[JobSpec, Delivery]:
    """The job submitted while the worker blocks on its empty streams, as that read returns it."""
    submitted: list[JobSpec] = []
    later = threading.Timer(0.2, lambda: submitted.append(submitting()))
    later.start()
    taken = worker.read_new(5000)
    later.join()
    assert len(taken) == 1 and taken[0].waited
    return submitted[0], taken[0]


def test_a_small_job_travels_whole_in_its_entry_and_a_large_one_does_not(redis_server, client, keys):
    """The blocking read of a small job returns its spec and images as its START would (so a
    woken worker can run it at once); a job over ``CARRY_MAX_BYTES`` carries only its id and
    owner, and is started the one usual way."""
    worker = consumer(client, keys, "a")
    small, delivery = woken_by(worker, lambda: submit(redis_server.url, keys, n_images=2))
    assert delivery.carried is not None
    assert JobSpec.model_validate_json(delivery.carried.spec) == small
    assert delivery.carried.created_ms == small.created_ms
    outcome, started = worker.start_one(small.job_id, delivery.owner)
    assert outcome == "run" and started is not None
    assert delivery.carried.images == started.images == {0: b"img", 1: b"img"}
    with pytest.MonkeyPatch.context() as patch:
        # (every spec here has the same length: ids, times and counts of fixed width)
        patch.setattr(producer_module, "CARRY_MAX_BYTES", len(small.model_dump_json()) + 3)
        large, delivery = woken_by(worker, lambda: submit(redis_server.url, keys, n_images=2))
        exact, exact_delivery = woken_by(worker, lambda: submit(redis_server.url, keys, n_images=1))
    assert delivery.job_id == large.job_id and delivery.carried is None  # spec + 6 bytes: over
    assert exact_delivery.carried is not None  # spec + 3 bytes: exactly the bound
    assert len(exact.model_dump_json()) == len(small.model_dump_json())
    # (TAKE, the read under load, returns ids and owners only, whatever the entry carries)
    submit(redis_server.url, keys)
    (taken,) = worker.read_new(None)
    assert taken.carried is None and taken.owner == "alice"


def test_an_early_start_runs_before_the_jobs_events_and_its_reply_is_read_later(
        redis_server, client, keys):
    """``start_early`` returns the job from its entry at once; Redis runs the START before the
    events published after it (same connection), and the reply is read by the next write, also
    when Redis forgot its scripts meanwhile (START and events run again, in order)."""
    worker = consumer(client, keys, "a")
    spec, delivery = woken_by(worker, lambda: submit(redis_server.url, keys))
    client.script_flush()  # START and the event after it fail unread; settle runs both again
    job = worker.start_early(delivery)
    assert job.spec == spec and job.attempt == 1 and job.images == {0: b"img"}
    assert job.early is not None and job.early.outcome is None  # not read yet
    worker.publish(spec.job_id, "zeroshot", {"image": 0})
    assert worker.confirmed(job) and job.early.outcome == "run"
    assert worker.finish_image(spec, 0, {"label": "a"}) == (True, True)
    assert events(client, keys, spec.job_id) == ["queued", "started", "zeroshot", "result"]
    assert client.hget(keys.job(spec.job_id), "attempts") == b"1"


def test_a_job_started_early_that_was_not_to_run_leaves_nothing(redis_server, client, keys):
    """A job found expired by its START, after it began running early: its events and result
    are refused (the job is failed), and the worker learns why from the reply."""
    worker = consumer(client, keys, "a")
    spec, delivery = woken_by(worker, lambda: submit(redis_server.url, keys, deadline_s=-1))
    job = worker.start_early(delivery)
    worker.publish(spec.job_id, "progress", {"image": 0, "step": 0})
    assert not worker.confirmed(job) and job.early is not None
    assert job.early.outcome == "expired"
    assert worker.finish_image(spec, 0, {"label": "a"}) == (False, False)
    assert events(client, keys, spec.job_id) == ["queued", "error"]
    assert client.hget(keys.job(spec.job_id), "status") == b"failed"
    assert not client.hexists(keys.results(spec.job_id), "0")
    with pytest.raises(ValueError, match="does not carry"):
        worker.start_early(Delivery(delivery.stream, delivery.entry_id, delivery.job_id, delivery.owner))
