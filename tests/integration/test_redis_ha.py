"""Redis high availability, live on loopback: a submission is acknowledged only once a replica
holds it (Redis WAIT), and with jobs flowing, a SIGKILLed master fails over to its replica
(three sentinels) without losing a job the API accepted."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis

from bench.failover import run_failover
from bench.redis_ha import ReplicatedRedis
from service.queue.keys import Keys
from service.redis_server import PrivateRedis
from tests.integration.conftest import LABELS, make_service, png_bytes, sse_events
from tests.integration.test_faults import end_states

FINISHED = ("done", "failed", "dead")


def test_a_job_no_replica_confirms_in_time_is_withdrawn_and_answered_503(tmp_path):
    """A master whose replica never confirms (there is none): the client gets 503 not_replicated
    with Retry-After, and the job is failed, so no worker runs it and a retry cannot run twice.
    (The worker is paused: a zero-shot job on an idle worker may finish within the wait, and a
    finished job is not withdrawn: its answer stands and the submission succeeds.)"""
    master = PrivateRedis(tmp_path / "redis", persist=False).start()
    service = make_service(master.url, tmp_path, TTA_REDIS_WAIT_REPLICAS="1", TTA_REDIS_WAIT_TIMEOUT_MS="100")
    try:
        service.start_api()
        worker = service.start_worker("w1", TTA_HEARTBEAT_S="60")  # (live while paused)
        service.wait_workers({"w1"})
        worker.send_signal(signal.SIGSTOP)
        try:
            with service.client() as client:
                response = client.post("/v1/jobs", files=[("image", ("a.png", png_bytes(1)))],
                                       data={"labels": LABELS, "method": "zeroshot"})
        finally:
            worker.send_signal(signal.SIGCONT)
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "not_replicated" and response.headers["Retry-After"] == "1"
        assert "withdrawn" in response.json()["message"]
        keys = Keys(service.env["TTA_REDIS_PREFIX"])
        with redis.Redis.from_url(master.url) as connection:
            jobs = [key for key in connection.scan_iter(f"{keys.prefix}:job:*") if key.count(b":") == 2]
            assert len(jobs) == 1
            time.sleep(1.0)  # (the resumed worker has met it by now, and not run it)
            assert connection.hget(jobs[0], "status") == b"failed"
            assert b"not_replicated" in connection.hget(jobs[0], "error")
            assert connection.zcard(keys.open_jobs) == 0
            assert connection.hlen(keys.results(jobs[0].decode().rsplit(":", 1)[1])) == 0
    finally:
        service.stop()
        master.stop()


@pytest.fixture
def replicated(tmp_path) -> Iterator[ReplicatedRedis]:  # type: ignore[no-untyped-def]
    ha = ReplicatedRedis(tmp_path / "ha").start()
    yield ha
    ha.stop()


def test_a_master_killed_under_load_fails_over_and_no_accepted_job_is_lost(tmp_path):
    """``tta bench failover``'s run: the API and a worker reach Redis through the sentinels and
    wait for the replica on each submission (the default when one is connected). Jobs flow; the
    master is SIGKILLed; the sentinels promote the replica. Every job the API accepted (202)
    ends done, and the client saw nothing but 503s, only around the failover."""
    run = run_failover(tmp_path)
    print(f"\n{run}")
    assert run["accepted"] >= 20 and run["done"] == run["accepted"]
    assert run["lost"] == 0 and run["failed"] == 0
    assert run["refused_statuses"] in ([], [503])  # never a 5xx but 503, never a dropped connection
    assert run["error_window_s"] < 10 and run["all_ended_after_kill_s"] < 120  # (the bounds the docs state)


def test_a_master_killed_while_a_worker_is_mid_job_fails_over_and_the_job_completes(replicated, tmp_path):
    """The master dies while the worker is tuning (a TPT job of many steps, its first steps
    already streamed): the worker's writes fail, it carries on against the new master once the
    sentinels promote the replica, and the job ends done with its result."""
    service = make_service("", tmp_path, TTA_REDIS_SENTINELS=replicated.sentinel_setting,
                           TTA_REDIS_SENTINEL_MASTER="tta", TTA_REDIS_WAIT_TIMEOUT_MS="1000")
    try:
        service.start_api()
        service.start_worker("w1")
        service.wait_workers({"w1"})
        with service.client() as client:
            response = client.post("/v1/jobs", files=[("image", ("a.png", png_bytes(5)))],
                                   data={"labels": LABELS, "method": "tpt",
                                         "options": '{"steps": 64, "n_views": 64}'})
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as events:
                for _, event, data in sse_events(events):
                    if event == "progress" and data["step"] >= 2:
                        break  # mid-job: tuning, 62 steps to go
            replicated.kill_master()
            keys = Keys(service.env["TTA_REDIS_PREFIX"])
            with redis.Redis(port=replicated.replica.port) as replica:  # what survives the kill
                assert replica.hget(keys.job(job_id), "status") == b"running"
            replicated.wait_promoted()
            states = end_states(service, "alice", [job_id], timeout_s=120)
            assert states == {job_id: "done"}
            job = client.get(f"/v1/jobs/{job_id}").json()
            assert job["results"][0]["metrics"]["steps"] == 64 and job["results"][0]["label"] in LABELS
    finally:
        service.stop()
