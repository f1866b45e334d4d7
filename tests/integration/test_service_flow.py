"""The service end to end over real HTTP: API (uvicorn) + two worker processes + redis-server."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from collections.abc import Iterator

import pytest

from tests.integration.conftest import (
    LABELS,
    Service,
    encode,
    make_service,
    png_bytes,
    sse_events,
    wait_until,
)

SLOW = {"method": "rlcf-tune", "options": json.dumps({"params": "all", "steps": 8, "n_views": 128})}


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[Service]:
    # Images one at a time (no episode sets, which test_episode_sets.py covers): the kill and
    # SIGTERM tests need a job with some of its images done and some not.
    svc = make_service(redis_server.url, tmp_path_factory.mktemp("flow"), TTA_EPISODE_BATCH_MAX="1")
    svc.start_api()
    svc.start_worker("w1")
    svc.start_worker("w2")
    svc.wait_workers({"w1", "w2"})
    yield svc
    svc.stop()


def form(labels=LABELS, **fields) -> dict:  # type: ignore[no-untyped-def]
    return {"labels": list(labels), **{k: str(v) for k, v in fields.items()}}


def submit(client, seed: int, **fields) -> str:  # type: ignore[no-untyped-def]
    """POST /v1/jobs with one generated image; returns the job id."""
    files = [("image", (f"{seed}.png", png_bytes(seed)))]
    response = client.post("/v1/jobs", files=files, data=form(**fields))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def wait_done(client, job_ids: list[str], timeout_s: float = 60) -> list[dict]:  # type: ignore[no-untyped-def]
    def finished() -> list[dict] | None:  # type: ignore[type-arg]
        jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in job_ids]
        return jobs if all(j["status"] in ("done", "failed", "dead") for j in jobs) else None

    return wait_until(finished, timeout_s, f"jobs {job_ids}", interval_s=0.2)


def test_classify_multipart_returns_one_result_per_image_in_order(service):
    images = [("image", ("a.png", png_bytes(1))), ("image", ("b.png", png_bytes(2)))]
    with service.client() as client:
        response = client.post("/v1/classify", files=images, data=form(method="rlcf", top_k=3))
        # The waiting classify answers from the job's events; a later read of the job agrees.
        assert client.get(f"/v1/jobs/{response.json()['job_id']}").json() == response.json()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done" and body["n_images"] == 2 and body["attempts"] == 1
    assert [r["image"] for r in body["results"]] == [0, 1]
    for result in body["results"]:
        assert result["label"] in LABELS and len(result["top_k"]) == 3
        assert result["top_k"][0]["label"] == result["label"]
        assert result["changed"] == (result["label"] != result["zeroshot_top_k"][0]["label"])
        metrics = result["metrics"]
        assert metrics["steps"] == 3 and metrics["compute_ms"] > 0 and metrics["queue_ms"] >= 0
        assert metrics["worker"] in {"w1", "w2"}


def test_classify_json_base64_matches_multipart(service):
    image = png_bytes(3)
    body = {"images": [base64.b64encode(image).decode()], "labels": LABELS, "method": "tpt", "seed": 7}
    with service.client() as client:
        from_json = client.post("/v1/classify", json=body).json()
        from_form = client.post("/v1/classify", files=[("image", ("x.png", image))],
                                data=form(method="tpt", seed=7)).json()
    assert from_json["results"][0]["top_k"] == from_form["results"][0]["top_k"]  # same seed, same answer


def test_sse_streams_events_in_order_and_resumes_without_repeats(service):
    with service.client() as client:
        headers = {"Accept": "text/event-stream"}
        files = [("image", ("a.png", png_bytes(4)))]
        with client.stream("POST", "/v1/classify", headers=headers, files=files,
                           data=form(method="rlcf")) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
        names = [name for _, name, _ in events]
        assert names == ["queued", "started", "zeroshot", "progress", "progress", "progress", "result"]
        assert [data["step"] for _, name, data in events if name == "progress"] == [1, 2, 3]
        assert events[-1][2]["final"] is True
        job_id = response.headers["X-Job-ID"]

        # A reconnect after the third event gets exactly the rest.
        with client.stream("GET", f"/v1/jobs/{job_id}/events",
                           headers={"Last-Event-ID": events[2][0]}) as resumed:
            rest = list(sse_events(resumed))
        assert [e[0] for e in rest] == [e[0] for e in events[3:]]
        # From the start, the stream replays everything.
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as replay:
            assert [e[0] for e in sse_events(replay)] == [e[0] for e in events]


def test_auto_streams_why_it_escalated_and_answers_as_the_tier_it_called(service):
    """Over HTTP: an ``auto`` job that escalates to TPT streams its zero-shot guess, why it
    escalated and TPT's steps, and answers what a ``tpt`` job with the same image and seed does."""
    options = {"tiers": "tpt:steps=2", "threshold": 1.0, "tier_threshold": 1.0}
    with service.client() as client:
        files = [("image", ("a.png", png_bytes(21)))]
        with client.stream("POST", "/v1/classify", headers={"Accept": "text/event-stream"}, files=files,
                           data=form(method="auto", options=json.dumps(options), seed=7)) as response:
            events = list(sse_events(response))
        tpt = client.post("/v1/classify", files=files, data=form(method="tpt", seed=7,
                                                                 options=json.dumps({"steps": 2})))
    assert [name for _, name, _ in events] == ["queued", "started", "zeroshot", "progress", "progress",
                                               "progress", "result"]
    escalate, *steps = [data for _, name, data in events if name == "progress"]
    assert escalate["metric"] == "escalate" and escalate["tier"] == "tpt:steps=2"
    assert escalate["from"] == "zeroshot" and escalate["threshold"] == 1.0
    assert [(step["step"], step["tier"]) for step in steps] == [(1, "tpt:steps=2"), (2, "tpt:steps=2")]
    result, expected = events[-1][2], tpt.json()["results"][0]
    assert result["metrics"]["tier"] == "tpt:steps=2" and result["metrics"]["settled_by"] == "last_tier"
    assert (result["label"], result["top_k"]) == (expected["label"], expected["top_k"])


def test_api_keys_own_their_jobs(service):
    with service.client("alice") as alice:
        job_id = submit(alice, 5)
        assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
    with service.client(None) as anonymous:
        missing = anonymous.get(f"/v1/jobs/{job_id}")
        assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = anonymous.get(f"/v1/jobs/{job_id}", headers={"Authorization": "Bearer tta_not-a-key"})
        assert wrong.status_code == 401
        assert anonymous.post("/v1/classify", json={"images": [], "labels": LABELS}).status_code == 401
    with service.client("bob") as bob:
        for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events"):
            response = bob.get(path)
            assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_concurrent_zero_shot_jobs_share_a_batch(service):
    with service.client() as client:
        busy = [submit(client, 20 + i, **SLOW) for i in range(2)]
        wait_until(lambda: all(client.get(f"/v1/jobs/{j}").json()["status"] == "running" for j in busy),
                   30, "both workers to be busy")
        queued = [submit(client, 30 + i, method="zeroshot") for i in range(6)]
        done = wait_done(client, queued)
    sizes = [job["results"][0]["metrics"]["batch_size"] for job in done]
    assert max(sizes) >= 3, sizes  # they waited behind the slow jobs, then ran together


def test_bad_requests_are_rejected_without_harming_a_concurrent_job(service):
    from PIL import Image

    with service.client() as client:
        job_id = submit(client, 40, **SLOW)
        truncated = encode(Image.new("RGB", (200, 200), "red"), "JPEG")[:300]
        bomb = encode(Image.new("1", (12_000, 12_000)), "PNG")
        broken = b"--xyz\r\nContent-Disposition: form-data\r\n\r\nbroken"
        bad = [
            ("malformed", client.post("/v1/classify", content=broken,
                                      headers={"Content-Type": "multipart/form-data; boundary=xyz"})),
            ("truncated", client.post("/v1/classify", files=[("image", ("t.jpg", truncated))], data=form())),
            ("bomb", client.post("/v1/classify", files=[("image", ("b.png", bomb))], data=form())),
        ]
        statuses = {name: (r.status_code, r.json()["code"]) for name, r in bad}
        assert statuses == {"malformed": (400, "malformed_request"), "truncated": (422, "invalid_image"),
                            "bomb": (413, "image_too_large")}
        final = wait_done(client, [job_id])[0]
    assert final["status"] == "done" and final["results"][0]["label"] in LABELS


def test_metrics_report_http_queue_and_worker_figures(service):
    with service.client() as client:
        text = client.get("/metrics").text
    assert 'tta_http_requests_total{method="POST",route="/v1/classify",status="200"}' in text
    for name in ("tta_queue_depth", "tta_queue_oldest_age_seconds", "tta_dead_letter_depth",
                 "tta_workers_live 2.0", "tta_jobs_submitted_total"):
        assert name in text


def test_readyz_and_methods(service):
    with service.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["workers"] == 2
        assert re.fullmatch(r"app;dur=\d+\.\d\d", ready.headers["server-timing"])
        refused = client.post("/v1/classify", data=form(method="no-such-method"))
        assert 400 <= refused.status_code < 500 and refused.headers["server-timing"].startswith("app;dur=")
        methods = {m["name"]: m for m in client.get("/v1/methods").json()["methods"]}
    assert {"zeroshot", "tpt", "rlcf", "rlcf-tune"} <= set(methods)
    assert all(methods[m]["served"] for m in ("zeroshot", "tpt", "rlcf", "rlcf-tune"))
    assert {o["name"] for o in methods["rlcf"]["options"]} >= {"steps", "lr", "sample_k"}


def test_the_load_bench_says_where_each_requests_time_went(service):
    """``tta bench load``'s breakdown: its four stages, from the job's event ids and the
    client's clock, add up to the request's end-to-end time (to the 1 ms steps of event ids)
    and the worker's compute lies within its queued -> result stages (a lone zero-shot job runs
    before its START's reply is read, and Redis, short of a core while it computes, may record
    "started" a little after the compute began); the API's Server-Timing lies between the
    compute and the end-to-end time. (It comes before the tests that stop the workers.)"""
    import asyncio

    from bench.load import STAGES, run_load

    samples, _ = asyncio.run(run_load(service.url, "zeroshot", {}, 1, 2.0, service.keys["alice"],
                                      breakdown=True))
    staged = [s for s in samples if STAGES[0] in s]
    assert len(staged) >= 5, samples
    for sample in staged:
        assert abs(sum(sample[stage] for stage in STAGES) - sample["e2e_ms"]) < 3.0, sample
        assert all(sample[stage] > -2.0 for stage in STAGES), sample
        assert sample["queued_to_started"] + sample["started_to_result"] >= sample["compute_ms"] - 2.0, sample
        assert sample["compute_ms"] < sample["server_ms"] < sample["e2e_ms"], sample


def test_sigkilled_worker_job_completes_on_the_other_worker_with_one_result_per_image(service):
    files = [("image", (f"{i}.png", png_bytes(50 + i))) for i in range(4)]
    with service.client() as client:
        job_id = client.post("/v1/jobs", files=files, data=form(**SLOW)).json()["job_id"]
        events = []
        killed = None
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            for event in sse_events(response):
                events.append(event)
                _, name, data = event
                if name == "result" and killed is None:  # first image done: kill its worker now
                    killed = data["metrics"]["worker"]
                    os.kill(service.workers[killed].pid, signal.SIGKILL)
        job = client.get(f"/v1/jobs/{job_id}").json()
    results = [data for _, name, data in events if name == "result"]
    assert sorted(r["image"] for r in results) == [0, 1, 2, 3]  # each image's result exactly once
    assert results[-1]["final"] and job["status"] == "done" and job["attempts"] == 2
    started = [data["worker"] for _, name, data in events if name == "started"]
    survivor = ({"w1", "w2"} - {killed}).pop()
    assert started == [killed, survivor]
    assert job["results"][0]["metrics"]["worker"] == killed  # image 0 was not run again
    assert {r["metrics"]["worker"] for r in job["results"][1:]} == {survivor}


def test_sigterm_lets_the_worker_finish_its_job(service):
    name = ({"w1", "w2"} & {n for n, p in service.workers.items() if p.poll() is None}).pop()
    with service.client() as client:
        job_id = submit(client, 60, **SLOW)
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "running", 30, "the start")
        service.workers[name].send_signal(signal.SIGTERM)
        code = service.workers[name].wait(timeout=60)
        log_tail = (service.logs / f"worker-{name}.log").read_text()[-3000:]
        assert code == 0, log_tail
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "done" and job["attempts"] == 1, (job, log_tail)
    assert name not in service.live_workers()  # it unregistered on the way out

