"""The worker's scheduler, in process against a real Redis and the tiny CLIP: the job that began
a zero-shot batch is started together with its batch-mates (one START trip for all), a small
lone job that woke an idle worker runs at once, on its own, before its START reply, a job
whose START says it is not to run leaves nothing, and a look at the queue that came back short
is not repeated; an episode-set job's start takes its set-mates in the same round trip; a
background job serves the classify jobs queued behind it."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from adapters.engine import Engine
from service.queue import producer as producer_module
from service.queue.keys import Keys
from service.queue.producer import Producer
from service.queue.routing import route
from service.queue.schemas import JobSpec, new_job_id, now_ms, parse_event
from service.settings import Settings
from service.worker import metrics
from service.worker import scheduler as scheduler_module
from service.worker.main import READ_BLOCK_MS, Worker
from service.worker.scheduler import Scheduler
from tests.conftest import LABELS, make_image


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_image(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def enqueue(url: str, keys: Keys, seeds: list[int], method: str = "zeroshot",
            options: dict[str, object] | None = None, deadline_s: float = 60) -> list[JobSpec]:
    specs = []

    async def run() -> None:
        async with aioredis.Redis.from_url(url) as connection:
            producer = Producer(connection, keys, ttl_s=60)
            for seed in seeds:
                created = now_ms()
                spec = JobSpec(job_id=new_job_id(), owner="alice", method=method, labels=list(LABELS),
                               options=options or {}, n_images=1, created_ms=created,
                               deadline_ms=created + int(deadline_s * 1000))
                await producer.enqueue(spec, [png(seed)], max_depth=100, max_inflight=100)
                specs.append(spec)

    asyncio.run(run())
    return specs


@pytest.fixture
def worker(redis_server, engine: Engine, tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """A worker's scheduler on the tiny CLIP whose START calls are recorded (the job ids of each
    call, and whether it took set-mates in the same trip) and its reads counted."""
    settings = Settings(redis_prefix=f"wb-{uuid.uuid4().hex[:8]}", batch_wait_ms=0, model_store=tmp_path,
                        data_dir=tmp_path)
    with redis.Redis.from_url(redis_server.url) as client:
        scheduler = Worker(settings, engine, client, worker_id="w1").scheduler
        scheduler.consumer.ensure_group()
        starts: list[tuple[list[str], bool]] = []
        start = scheduler.consumer.start

        def recorded_start(deliveries, then_take=None):  # type: ignore[no-untyped-def]
            starts.append(([d.job_id for d in deliveries], then_take is not None))
            return start(deliveries, then_take=then_take)

        monkeypatch.setattr(scheduler.consumer, "start", recorded_start)
        scheduler.starts = starts  # type: ignore[attr-defined]
        looks: list[int] = []  # the count asked of each read of new jobs
        read_new = scheduler.consumer.read_new

        def recorded_read_new(block_ms, streams=None, count=1, mates=None):  # type: ignore[no-untyped-def]
            looks.append(count)
            return read_new(block_ms, streams, count, mates)

        monkeypatch.setattr(scheduler.consumer, "read_new", recorded_read_new)
        scheduler.looks = looks  # type: ignore[attr-defined]
        early: list[str] = []  # the jobs started without waiting for their START reply
        start_early = scheduler.consumer.start_early
        monkeypatch.setattr(scheduler.consumer, "start_early",
                            lambda delivery: early.append(delivery.job_id) or start_early(delivery))
        scheduler.early = early  # type: ignore[attr-defined]
        yield scheduler


def results(worker: Scheduler, spec: JobSpec) -> dict:  # type: ignore[type-arg]
    client = worker.consumer.client
    assert client.hget(worker.consumer.keys.job(spec.job_id), "status") == b"done"
    return json.loads(client.hget(worker.consumer.keys.results(spec.job_id), "0"))


def test_queued_zero_shot_jobs_are_started_together_and_run_as_one_batch(worker, redis_server):
    specs = enqueue(redis_server.url, worker.consumer.keys, [1, 2, 3])
    worker.step(READ_BLOCK_MS)  # takes the first and its mates in one read: all three started in one call
    assert worker.starts == [([s.job_id for s in specs], False)]
    # That read found fewer mates than it asked for, so the batch, which may not wait
    # (TTA_BATCH_WAIT_MS=0), does not look again.
    assert worker.looks == [1]
    for spec in specs:
        assert results(worker, spec)["metrics"]["batch_size"] == 3
    stream = worker.consumer.keys.jobs(route("zeroshot", None))
    assert worker.consumer.client.xpending(stream, "workers")["pending"] == 0


def woken_by(worker: Scheduler, submitting: Callable[[], list[JobSpec]]) -> JobSpec:
    """Run the job submitted while the idle worker blocks on its empty queue, as it is run."""
    queued: list[JobSpec] = []
    later = threading.Timer(0.3, lambda: queued.extend(submitting()))
    later.start()
    (delivery,) = worker.fetch(5000)  # blocked on the empty queue until the job came
    later.join()
    assert delivery.waited
    worker.taken = [delivery]
    worker.process(delivery)
    return queued[0]


def events(worker: Scheduler, spec: JobSpec) -> list[str]:
    client, keys = worker.consumer.client, worker.consumer.keys
    return [parse_event(i, f).event for i, f in client.xrange(keys.events(spec.job_id))]


def pending(worker: Scheduler, method: str) -> int:
    stream = worker.consumer.keys.jobs(route(method, None))
    return int(worker.consumer.client.xpending(stream, "workers")["pending"])


def test_a_lone_job_that_woke_the_idle_worker_runs_at_once_before_its_start_reply(worker, redis_server):
    """The queue was empty a moment ago: it runs alone, from what its entry carries, while its
    START is on the way (no START round trip, no look for batch-mates); its record is the same
    as a job started the usual way."""
    spec = woken_by(worker, lambda: enqueue(redis_server.url, worker.consumer.keys, [4]))
    assert worker.early == [spec.job_id] and worker.starts == []
    assert worker.looks == [1]  # the read that woke it
    result = results(worker, spec)
    assert result["metrics"]["batch_size"] == 1 and result["metrics"]["attempt"] == 1
    assert events(worker, spec) == ["queued", "started", "zeroshot", "result"]
    assert pending(worker, "zeroshot") == 0


def test_a_lone_job_too_large_to_travel_in_its_entry_is_started_the_usual_way(
        worker, redis_server, monkeypatch):
    monkeypatch.setattr(producer_module, "CARRY_MAX_BYTES", 0)
    spec = woken_by(worker, lambda: enqueue(redis_server.url, worker.consumer.keys, [4]))
    assert worker.early == [] and worker.starts == [([spec.job_id], False)]
    assert results(worker, spec)["metrics"]["batch_size"] == 1


@pytest.mark.parametrize("early", [True, False], ids=["started early", "started the usual way"])
@pytest.mark.parametrize("method", ["zeroshot", "tpt"])
def test_a_job_whose_start_says_it_expired_leaves_no_trace(worker, redis_server, method, early,
                                                           monkeypatch):
    """Its START failed it for its deadline (read before it ran, or after it ran early): none
    but its queued and error events reach the record, it is counted as expired and not as
    answered, and its entry is acked."""
    monkeypatch.setattr(scheduler_module, "EARLY_EPISODE_MAX_AGE_MS", 60_000)  # (however slow)
    if not early:
        monkeypatch.setattr(producer_module, "CARRY_MAX_BYTES", 0)
    expired, images = metrics.JOBS.labels("unknown", "expired"), metrics.IMAGES.labels(method)
    before, images_before = expired._value.get(), images._value.get()
    options = TPT_FAST if method == "tpt" else None
    spec = woken_by(worker, lambda: enqueue(redis_server.url, worker.consumer.keys, [12], method, options,
                                            deadline_s=-1))
    assert worker.early == ([spec.job_id] if early else [])
    client, keys = worker.consumer.client, worker.consumer.keys
    assert client.hget(keys.job(spec.job_id), "status") == b"failed"
    assert events(worker, spec) == ["queued", "error"]
    assert client.hlen(keys.results(spec.job_id)) == 0
    assert expired._value.get() == before + 1
    assert images._value.get() == images_before  # no image was answered
    assert pending(worker, method) == 0


def test_a_batch_whose_first_job_is_gone_runs_the_others(worker, redis_server):
    """A first job that is not to run (here: deleted, as an expired job is) is acked by the
    shared start, and its batch-mates still run."""
    gone, *others = enqueue(redis_server.url, worker.consumer.keys, [5, 6, 7])
    worker.consumer.client.delete(worker.consumer.keys.job(gone.job_id))
    worker.step(READ_BLOCK_MS)
    assert worker.starts == [([gone.job_id, *(s.job_id for s in others)], False)]
    for spec in others:
        assert results(worker, spec)["metrics"]["batch_size"] == 2


TPT_FAST = {"n_views": 8, "steps": 1}


def test_an_episode_job_takes_its_set_mates_with_its_start(worker, redis_server):
    first, *mates = enqueue(redis_server.url, worker.consumer.keys, [8, 9, 10], "tpt", TPT_FAST)
    worker.step(READ_BLOCK_MS)
    # The first job's START went with the look for its mates (no separate look but the one
    # that took the first); the mates are started together, and all three run as one set.
    assert worker.looks == [1]
    assert worker.starts == [([first.job_id], True), ([m.job_id for m in mates], False)]
    for spec in (first, *mates):
        assert results(worker, spec)["metrics"]["episode_batch"] == 3


def test_a_lone_episode_job_that_woke_the_idle_worker_runs_at_once_before_its_start_reply(
        worker, redis_server, monkeypatch):
    monkeypatch.setattr(scheduler_module, "EARLY_EPISODE_MAX_AGE_MS", 60_000)  # (however slow)
    spec = woken_by(worker, lambda: enqueue(redis_server.url, worker.consumer.keys, [11], "tpt", TPT_FAST))
    assert worker.early == [spec.job_id] and worker.starts == []
    assert worker.looks == [1]  # the read that woke it; no look for set-mates
    assert results(worker, spec)["metrics"]["episode_batch"] == 1
    assert events(worker, spec) == ["queued", "started", "zeroshot", "progress", "result"]
    assert pending(worker, "tpt") == 0


def test_a_lone_episode_job_started_the_usual_way_pays_no_second_trip_to_find_no_set_mates(
        worker, redis_server, monkeypatch):
    monkeypatch.setattr(producer_module, "CARRY_MAX_BYTES", 0)
    spec = woken_by(worker, lambda: enqueue(redis_server.url, worker.consumer.keys, [11], "tpt", TPT_FAST))
    assert worker.starts == [([spec.job_id], True)]  # its look for mates went with its START
    assert worker.looks == [1]  # the read that woke it
    assert results(worker, spec)["metrics"]["episode_batch"] == 1
    assert events(worker, spec) == ["queued", "started", "zeroshot", "progress", "result"]


def test_an_episode_job_that_found_the_worker_stalled_looks_for_set_mates_first(worker, redis_server):
    """The job woke the worker, but the worker got to it late (as after a pause), and two more
    were queued meanwhile: it is started the usual way, with the look for its set-mates, and
    all three run as one set."""
    keys = worker.consumer.keys
    queued: list[JobSpec] = []
    later = threading.Timer(0.3, lambda: queued.extend(
        enqueue(redis_server.url, keys, [13], "tpt", TPT_FAST)))
    later.start()
    (delivery,) = worker.fetch(5000)
    later.join()
    assert delivery.waited and delivery.carried is not None
    queued += enqueue(redis_server.url, keys, [14, 15], "tpt", TPT_FAST)
    time.sleep(0.05)
    assert delivery.age_ms() > scheduler_module.EARLY_EPISODE_MAX_AGE_MS
    worker.taken = [delivery]
    worker.process(delivery)
    assert worker.early == []
    assert worker.starts == [([queued[0].job_id], True), ([s.job_id for s in queued[1:]], False)]
    for spec in queued:
        assert results(worker, spec)["metrics"]["episode_batch"] == 3


@pytest.mark.parametrize(("method", "options"), [("zeroshot", None), ("tpt", TPT_FAST)])
def test_a_label_sets_preparation_serves_the_classify_jobs_queued_while_it_runs(
        worker, redis_server, method, options):
    """A preparation (the transition matrix of 60 classes, a class at a time) pauses between
    classes to run the classify jobs queued meanwhile: a job queued while it runs is done before
    the preparation is, in the same worker step, and the preparation's result is the same as
    without the pause (its own delivery stays held throughout). A job that tunes (TPT) runs
    with gradients although the preparation encodes without them: the pause is not inside
    the preparation's no-grad block."""
    from service.queue.labelsets import LabelSet, content_version, encode, exemplar_field

    keys = worker.consumer.keys
    labels = [f"class {i} ({method})" for i in range(60)]  # (not prepared by the other case)
    exemplars = {i: [png(100 + i)] for i in range(len(labels))}
    label_set = LabelSet(name="many", owner="alice", labels=labels, templates="single",
                         version=content_version(labels, "single", exemplars),
                         exemplar_counts=[1] * len(labels), created_ms=now_ms())
    client = worker.consumer.client
    client.hset(keys.label_set("alice", "many"), mapping=encode(label_set))
    for index, images in exemplars.items():
        client.hset(keys.label_set_exemplars("alice", "many"), exemplar_field(index, 0), images[0])

    async def prepare() -> JobSpec:
        async with aioredis.Redis.from_url(redis_server.url) as connection:
            created = now_ms()
            spec = JobSpec(job_id=new_job_id(), kind="prepare_label_set", owner="alice", method="mllm",
                           labels=labels, label_set="many", label_set_version=label_set.version,
                           n_images=1, created_ms=created, deadline_ms=created + 60_000)
            await Producer(connection, keys, ttl_s=60).enqueue(spec, [], max_depth=100, max_inflight=100)
            return spec

    preparation = asyncio.run(prepare())
    queued: list[JobSpec] = []
    pause = worker.runner.between_steps

    def queue_then_pause() -> None:  # the job arrives while the preparation runs
        if not queued:
            queued.extend(enqueue(redis_server.url, keys, [5], method, options))
        pause()

    worker.runner.between_steps = queue_then_pause
    worker.step(READ_BLOCK_MS)  # takes the preparation: the classify runs in its first pause
    (classify,) = queued
    for spec in (preparation, classify):
        assert client.hget(keys.job(spec.job_id), "status") == b"done"
    finished = {spec.job_id: int(client.hget(keys.job(spec.job_id), "finished_ms"))
                for spec in (preparation, classify)}
    assert finished[classify.job_id] <= finished[preparation.job_id]
    classify_done = client.xrange(keys.events(classify.job_id))[-1][0]
    preparation_done = client.xrange(keys.events(preparation.job_id))[-1][0]
    assert classify_done < preparation_done  # (stream ids: Redis's clock, then a sequence)
    pairs = json.loads(client.hget(keys.results(preparation.job_id), "0"))["confused_pairs"]
    assert len(pairs) == 10 and all(p["true"] in labels for p in pairs)
    assert results(worker, classify)["metrics"]["steps"] == (0 if method == "zeroshot" else 1)
    assert pending(worker, method) == 0


def test_queued_auto_jobs_share_one_zero_shot_pass_and_escalate_as_one_set(worker, redis_server, engine):
    """Three queued auto jobs run as one set: the one settled by zero-shot is answered first,
    at once; the two others climb to their tier together (one TPT episode set of 2)."""
    seeds = [20, 21, 22]
    confidence = {s: engine.classify("zeroshot", make_image(s), LABELS).score for s in seeds}
    top, second = sorted(confidence.values())[-1], sorted(confidence.values())[-2]
    options = {"tiers": "tpt:n_views=8+steps=1", "threshold": (top + second) / 2}
    specs = enqueue(redis_server.url, worker.consumer.keys, seeds, "auto", options)
    worker.step(READ_BLOCK_MS)
    answers = {spec.job_id: results(worker, spec)["metrics"] for spec in specs}
    settled = next(s for s, spec in zip(seeds, specs, strict=True) if confidence[s] == top)
    settled_spec = specs[seeds.index(settled)]
    climbed = [spec for spec in specs if spec is not settled_spec]
    assert answers[settled_spec.job_id]["tier"] == "zeroshot"
    assert [(answers[s.job_id]["tier"], answers[s.job_id]["episode_batch"]) for s in climbed] == \
        [("tpt:n_views=8+steps=1", 2)] * 2
    assert events(worker, settled_spec) == ["queued", "started", "zeroshot", "result"]
    client, keys = worker.consumer.client, worker.consumer.keys
    answered_at = {spec.job_id: client.xrange(keys.events(spec.job_id))[-1][0] for spec in specs}
    assert all(answered_at[settled_spec.job_id] < answered_at[s.job_id] for s in climbed)
    assert pending(worker, "auto") == 0


def test_an_auto_job_never_runs_before_its_start_reply(worker, redis_server, monkeypatch):
    """Its TDA tier writes shared state, which a job its START refuses (cancelled, expired)
    must not: it is started the usual way even when it woke the idle worker, small."""
    monkeypatch.setattr(scheduler_module, "EARLY_EPISODE_MAX_AGE_MS", 60_000)  # (however slow)
    spec = woken_by(worker, lambda: enqueue(redis_server.url, worker.consumer.keys, [23], "auto",
                                            {"tiers": "tda", "threshold": 1.0}))
    assert worker.early == [] and worker.starts == [([spec.job_id], True)]
    assert results(worker, spec)["metrics"]["tier"] == "tda"
