"""Concurrent TPT/RLCF jobs on one worker are tuned as one episode set, each job's result the
one it gets alone, each job's events its own."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import redis

from service.queue.keys import Keys
from tests.integration.conftest import LABELS, Service, make_service, sse_events
from tests.integration.test_service_flow import submit, wait_done

OPTIONS = '{"steps": 3, "lr": 0.05}'


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[Service]:
    svc = make_service(redis_server.url, tmp_path_factory.mktemp("episodes"),
                       TTA_MAX_INFLIGHT_PER_KEY="16")
    svc.start_api()
    # A 60 s heartbeat keeps the worker live while it is stopped, so jobs queue behind it.
    svc.start_worker("w1", TTA_HEARTBEAT_S="60")
    svc.wait_workers({"w1"})
    yield svc
    svc.stop()


def _scores(result: dict) -> list[tuple[str, float]]:  # type: ignore[type-arg]
    return [(s["label"], s["score"]) for s in result["top_k"]]


def test_queued_jobs_with_the_same_labels_run_as_one_episode_set(service):
    worker = service.workers["w1"]
    with service.client() as client:
        worker.send_signal(signal.SIGSTOP)
        try:
            same = [submit(client, seed, method="rlcf", options=OPTIONS) for seed in (1, 2, 3)]
            other = submit(client, 4, method="rlcf", options=OPTIONS, labels=LABELS[:3])
        finally:
            worker.send_signal(signal.SIGCONT)
        jobs = wait_done(client, [*same, other], timeout_s=120)
        assert all(job["status"] == "done" for job in jobs), jobs
        batched = [job["results"][0] for job in jobs[:3]]
        assert [r["metrics"]["episode_batch"] for r in batched] == [3, 3, 3]
        assert jobs[3]["results"][0]["metrics"]["episode_batch"] == 1  # other labels: its own set
        assert jobs[3]["results"][0]["label"] in LABELS[:3]

        # The same job alone (queue empty now) gives the same answer to float tolerance.
        for seed, together in zip((1, 2, 3), batched, strict=True):
            alone = wait_done(client, [submit(client, seed, method="rlcf",
                                              options=OPTIONS)])[0]["results"][0]
            assert alone["metrics"]["episode_batch"] == 1
            assert [label for label, _ in _scores(alone)] == [label for label, _ in _scores(together)]
            for (_, a), (_, t) in zip(_scores(alone), _scores(together), strict=True):
                assert abs(a - t) < 1e-4

        # Each job's stream has its own three progress events, then its result.
        with client.stream("GET", f"/v1/jobs/{same[1]}/events") as response:
            events = [(event, data) for _, event, data in sse_events(response)]
    steps = [data["step"] for event, data in events if event == "progress"]
    assert steps == [1, 2, 3]
    assert events[-1][0] == "result" and _scores(events[-1][1]) == _scores(batched[1])


def test_a_job_that_cannot_run_fails_alone_and_its_set_mates_finish(service, redis_server):
    """One of three queued jobs lost its image (expired): it fails with its own error, the two
    others still run together as one set."""
    worker = service.workers["w1"]
    keys = Keys(service.env["TTA_REDIS_PREFIX"])
    with service.client() as client:
        worker.send_signal(signal.SIGSTOP)
        try:
            ids = [submit(client, seed, method="tpt", options=OPTIONS) for seed in (5, 6, 7)]
            with redis.Redis.from_url(redis_server.url) as connection:
                assert connection.delete(keys.images(ids[1])) == 1
        finally:
            worker.send_signal(signal.SIGCONT)
        jobs = wait_done(client, ids, timeout_s=120)
    assert [job["status"] for job in jobs] == ["done", "failed", "done"]
    assert jobs[1]["error"]["code"] == "images_expired"
    assert [jobs[i]["results"][0]["metrics"]["episode_batch"] for i in (0, 2)] == [2, 2]
