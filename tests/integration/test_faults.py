"""The fault tier: real redis-server, API and worker processes, under the failures an operator
meets. End states and isolation are asserted, never timings: every accepted job ends done,
failed or dead; no job's content reaches another; waiters do not starve other requests."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
import redis

from service.queue.keys import Keys
from service.redis_server import PrivateRedis
from tests.integration.conftest import LABELS, Service, make_service, png_bytes, sse_events, wait_until

FINISHED = {"done", "failed", "dead"}


@pytest.fixture
def own_redis(tmp_path):  # type: ignore[no-untyped-def]
    server = PrivateRedis(tmp_path / "redis", persist=True).start()
    yield server
    server.stop()


def submit(client: httpx.Client, *, method: str = "rlcf", n_images: int = 1, labels: list[str] = LABELS,
           seed: int = 0) -> str:
    files = [("image", (f"{i}.png", png_bytes(seed + i))) for i in range(n_images)]
    response = client.post("/v1/jobs", files=files, data={"labels": labels, "method": method})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def end_states(service: Service, tenant: str, job_ids: list[str], timeout_s: float) -> dict[str, str]:
    """Each job's status once all are finished (fails the test if any is still open then)."""
    states: dict[str, str] = {}

    def all_finished() -> bool:
        with service.client(tenant) as client:
            for job_id in job_ids:
                if states.get(job_id) not in FINISHED:
                    response = client.get(f"/v1/jobs/{job_id}")
                    if response.status_code == 503:  # Redis is still coming back
                        return False
                    body = response.json()
                    states[job_id] = body.get("status") or f"{response.status_code} {body.get('code')}"
        return all(s in FINISHED for s in states.values())

    wait_until(all_finished, timeout_s, f"all jobs to finish; states {states}", interval_s=0.5)
    return states


def test_jobs_survive_redis_restarts_mid_job_under_load(own_redis, tmp_path):
    """Two Redis restarts (persisted data) while a worker runs multi-image jobs: every job ends
    done, each image has exactly one result, and nothing stays running."""
    # Episode sets of 2: a 4-image job has a moment with half its images done.
    service = make_service(own_redis.url, tmp_path, TTA_LEASE_S="3", TTA_EPISODE_BATCH_MAX="2")
    service.start_api()
    service.start_worker("w1")
    try:
        service.wait_workers({"w1"})
        with service.client() as client:
            jobs = [submit(client, n_images=4, seed=10 * i) for i in range(6)]
        keys = Keys(service.env["TTA_REDIS_PREFIX"])

        def a_job_half_done() -> bool:  # the outage must land inside a job, not between two
            with redis.Redis.from_url(own_redis.url) as connection:
                return any(connection.hget(keys.job(job), "status") == b"running"
                           and 0 < connection.hlen(keys.results(job)) < 4 for job in jobs)

        for _ in range(2):
            wait_until(a_job_half_done, 120, "a job with some of its images done", interval_s=0.005)
            own_redis.stop()
            time.sleep(2)
            own_redis.start()  # same port and data directory: the append-only file is replayed
        states = end_states(service, "alice", jobs, timeout_s=240)
        assert sorted(states.values()) == ["done"] * len(jobs), states
        attempts = []
        with service.client() as client:
            for job_id in jobs:
                results = client.get(f"/v1/jobs/{job_id}").json()["results"]
                assert [r["image"] for r in results] == [0, 1, 2, 3]
                assert all(r["label"] in LABELS for r in results)
                attempts.append([r["metrics"]["attempt"] for r in results])
        # The outages did interrupt running jobs, which were resumed (a later attempt), and the
        # images their first attempt had finished kept their results.
        assert any(max(a) > 1 for a in attempts), attempts
        with redis.Redis.from_url(own_redis.url) as connection:
            assert connection.zcard(keys.open_jobs) == 0  # no job holds a queue slot
            assert connection.zcard(keys.inflight("alice")) == 0
    finally:
        service.stop()


def test_a_poisoned_batch_item_fails_alone_and_leaks_nothing(redis_server, tmp_path):
    """Tenant A's zero-shot job is batched with tenant B's; A's stored job is then corrupted (as
    a job from a buggy or older API would be) so that it cannot run. B's jobs all succeed; A's
    fails with its own error; no event of B's carries anything of A's."""
    service = make_service(redis_server.url, tmp_path, TTA_HEARTBEAT_S="30", TTA_BATCH_WAIT_MS="50")
    service.start_api()
    worker = service.start_worker("w1")
    secret = "alices-secret-label"
    try:
        service.wait_workers({"w1"})
        worker.send_signal(signal.SIGSTOP)  # everything below is queued before it batches
        with service.client("alice") as alice, service.client("bob") as bob:
            poisoned = submit(alice, method="zeroshot", labels=[secret, "other thing"])
            valid = [submit(bob, method="zeroshot", seed=s) for s in range(5)]
        keys = Keys(service.env["TTA_REDIS_PREFIX"])
        with redis.Redis.from_url(redis_server.url) as connection:
            spec = json.loads(connection.hget(keys.job(poisoned), "spec"))
            spec["request"]["templates"] = ["{} {" + secret + "}"]  # what intake would have refused
            connection.hset(keys.job(poisoned), "spec", json.dumps(spec))
        worker.send_signal(signal.SIGCONT)
        assert end_states(service, "bob", valid, 120) == dict.fromkeys(valid, "done")
        assert end_states(service, "alice", [poisoned], 60) == {poisoned: "failed"}
        with service.client("bob") as bob:
            for job_id in valid:
                with bob.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                    events = list(sse_events(response))
                assert events[-1][1] == "result" and secret not in json.dumps(events)
                batch = next(e for e in events if e[1] == "result")[2]["metrics"]["batch_size"]
                assert batch >= 2  # it really shared a batch
        with service.client("alice") as alice:
            error = alice.get(f"/v1/jobs/{poisoned}").json()["error"]
        assert error["code"] == "invalid_options" and error["field"] == "templates"
    finally:
        service.stop()


def test_worker_killed_mid_batch_its_jobs_complete_elsewhere(redis_server, tmp_path):
    service = make_service(redis_server.url, tmp_path, TTA_BATCH_WAIT_MS="200")
    service.start_api()
    doomed = service.start_worker("doomed")
    service.wait_workers({"doomed"})
    try:
        doomed.send_signal(signal.SIGSTOP)  # it takes the jobs below as one batch, then dies
        with service.client() as client:
            jobs = [submit(client, method="zeroshot", seed=s) for s in range(8)]
        doomed.send_signal(signal.SIGCONT)
        time.sleep(0.05)
        doomed.kill()
        service.start_worker("rescuer")
        states = end_states(service, "alice", jobs, timeout_s=180)
        assert sorted(states.values()) == ["done"] * len(jobs)
        with service.client() as client:
            for job_id in jobs:
                body = client.get(f"/v1/jobs/{job_id}").json()
                assert len(body["results"]) == 1 and body["results"][0]["label"] in LABELS
    finally:
        service.stop()


def test_a_thousand_followers_do_not_starve_other_requests(redis_server, tmp_path):
    """1,000 concurrent SSE followers on one API process (20 queued jobs, 50 each), while a
    health check, a readiness check and status reads must still answer 200; then every follower
    gets its job's result and its stream closes."""
    followers_per_job, n_jobs = 50, 20
    service = make_service(redis_server.url, tmp_path, TTA_HEARTBEAT_S="30")
    service.start_api()
    worker = service.start_worker("w1")
    service.wait_workers({"w1"})
    worker.send_signal(signal.SIGSTOP)  # the jobs wait while the followers pile up
    try:
        with service.client() as client:
            jobs = [submit(client, method="zeroshot", seed=s) for s in range(n_jobs)]
        headers = {"Authorization": f"Bearer {service.keys['alice']}"}

        async def scenario() -> tuple[list[list[str]], list[int]]:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=service.url, headers=headers, limits=limits,
                                         timeout=httpx.Timeout(180)) as client:
                started = asyncio.Semaphore(0)

                async def follow(job_id: str) -> list[str]:
                    names: list[str] = []
                    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                        async for line in response.aiter_lines():
                            if line.startswith("event: "):
                                names.append(line.removeprefix("event: "))
                                if names == ["queued"]:
                                    started.release()
                    return names

                tasks = [asyncio.create_task(follow(job)) for job in jobs for _ in range(followers_per_job)]
                for _ in tasks:  # every follower is connected and has its first event
                    await asyncio.wait_for(started.acquire(), 300)
                checks = [(await client.get(path)).status_code
                          for path in ("/healthz", "/readyz", f"/v1/jobs/{jobs[0]}", "/metrics")]
                worker.send_signal(signal.SIGCONT)
                return list(await asyncio.gather(*tasks)), checks

        streams, checks = asyncio.run(scenario())
        assert checks == [200, 200, 200, 200]
        assert len(streams) == followers_per_job * n_jobs
        assert all(names[0] == "queued" and names[-1] == "result" for names in streams)
    finally:
        worker.send_signal(signal.SIGCONT)
        service.stop()


def test_following_a_finished_job_replays_and_closes(redis_server, tmp_path):
    service = make_service(redis_server.url, tmp_path)
    service.start_api()
    service.start_worker("w1")
    try:
        service.wait_workers({"w1"})
        with service.client() as client:
            response = client.post("/v1/classify", files=[("image", ("a.png", png_bytes()))],
                                   data={"labels": LABELS})
            job_id = response.json()["job_id"]
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                events = list(sse_events(stream))
            assert events[-1][1] == "result"
            after_last = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": events[-1][0]})
            assert after_last.status_code == 204  # EventSource stops reconnecting on 204
            after_second = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": events[1][0]})
            assert after_second.status_code == 200
            assert after_second.text.count("event: ") == len(events) - 2  # the rest, then closed
    finally:
        service.stop()


def test_sse_followers_lose_no_event_across_a_backlog_and_an_api_sigkill(redis_server, tmp_path):
    """A job of about a thousand events (16 images x 64 tpt steps): one follower reads 300 of
    them, the API is SIGKILLed and restarted while the worker is paused, and that follower
    resumes with Last-Event-ID while a new one joins from the start with hundreds in the stream.
    Both receive every event once, in order: the stream as GET replays it at the end."""
    service = make_service(redis_server.url, tmp_path, TTA_EPISODE_BATCH_MAX="4")
    service.start_api()
    worker = service.start_worker("w1")
    try:
        service.wait_workers({"w1"})
        with service.client() as client:
            files = [("image", (f"{i}.png", png_bytes(i))) for i in range(16)]
            response = client.post("/v1/jobs", files=files, data={
                "labels": LABELS, "method": "tpt", "options": json.dumps({"steps": 64, "n_views": 2})})
            assert response.status_code == 202, response.text
            job_id = response.json()["job_id"]
            first: list[tuple[str, str, dict]] = []  # type: ignore[type-arg]
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                for event in sse_events(stream):
                    first.append(event)
                    if len(first) == 300:
                        break
        worker.send_signal(signal.SIGSTOP)
        assert service.api is not None
        service.api.send_signal(signal.SIGKILL)
        service.api.wait()
        service.start_api()
        with service.client() as client:
            late_joiner = []
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                worker.send_signal(signal.SIGCONT)
                late_joiner = list(sse_events(stream))
            with client.stream("GET", f"/v1/jobs/{job_id}/events",
                               headers={"Last-Event-ID": first[-1][0]}) as stream:
                resumed = first + list(sse_events(stream))
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                replay = list(sse_events(stream))
            job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "done" and all(result is not None for result in job["results"])
        assert len(replay) == 2 + 16 * (1 + 64 + 1)  # queued, started; per image zeroshot, steps, result
        assert len({event_id for event_id, _, _ in replay}) == len(replay)
        assert late_joiner == replay
        assert resumed == replay
        assert sum(1 for _, name, _ in replay if name == "result") == 16
    finally:
        worker.send_signal(signal.SIGCONT)
        service.stop()


def test_the_worker_and_the_api_survive_redis_losing_its_scripts_at_any_rate(redis_server, tmp_path):
    """SCRIPT FLUSH about a hundred times a second while jobs of every path flow (zero-shot
    batches, episode sets, single jobs, auto): no 5xx, the worker process never exits, every job ends
    done (a flushed script is loaded again and its call repeated: nothing ran)."""
    import threading

    service = make_service(redis_server.url, tmp_path)
    service.start_api()
    worker = service.start_worker("w1")
    flushing = threading.Event()
    flushes = [0]

    def flush() -> None:
        with redis.Redis.from_url(redis_server.url) as client:
            while not flushing.is_set():
                client.script_flush()
                flushes[0] += 1
                time.sleep(0.01)

    flusher = threading.Thread(target=flush, daemon=True)
    try:
        service.wait_workers({"w1"})
        flusher.start()
        job_ids: list[str] = []
        with service.client() as client:
            def send_round(round_: int) -> None:
                for method in ("zeroshot", "zeroshot", "tpt", "tda", "rlcf", "auto"):
                    job_ids.append(submit(client, method=method, seed=round_))

            for round_ in range(8):
                send_round(round_)
            # More rounds until the storm has flushed 100 times while jobs ran (a fast
            # machine finishes 8 rounds within fewer flushes).
            while flushes[0] <= 100:
                end_states(service, "alice", job_ids, timeout_s=120)
                send_round(len(job_ids))
        states = end_states(service, "alice", job_ids, timeout_s=120)
        flushing.set()
        flusher.join()
        assert flushes[0] > 100
        assert worker.poll() is None, "the worker exited"
        assert set(states.values()) == {"done"}, states
    finally:
        flushing.set()
        service.stop()
