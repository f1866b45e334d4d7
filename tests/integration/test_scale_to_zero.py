"""Workers scaled to zero, as KEDA runs them (deploy/kubernetes/keda.yaml), live: with no worker
up the API stays ready (``/readyz?workers=false``) and queues jobs
(``TTA_SCALE_TO_ZERO_METHODS``); the query KEDA's redis-streams scaler makes in lag mode
(``XINFO GROUPS <stream>``, the group's ``lag``) rises with the backlog; a worker that starts
drains it, and the lag returns to zero."""

from __future__ import annotations

import redis

from service.queue.keys import GROUP, Keys
from service.queue.routing import route
from tests.integration.conftest import LABELS, make_service, png_bytes, wait_until
from tests.integration.test_faults import end_states


def keda_lag(connection: redis.Redis, stream: str) -> int:
    """What KEDA's redis-streams scaler reads with ``lagCount``: XINFO GROUPS, our group's lag
    (0 before the stream or its group exist, as the scaler reports then)."""
    try:
        groups = connection.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return 0
    lags = [group["lag"] for group in groups if group["name"].decode() == GROUP]
    assert all(lag is not None for lag in lags), "lag unknown: KEDA could not scale on it"
    return int(lags[0]) if lags else 0


def test_jobs_queue_while_workers_are_at_zero_and_keda_lag_rises_then_drains(redis_server, tmp_path):
    service = make_service(redis_server.url, tmp_path, TTA_SCALE_TO_ZERO_METHODS="zeroshot,tpt")
    stream = Keys(service.env["TTA_REDIS_PREFIX"]).jobs(route("zeroshot", None))
    with redis.Redis.from_url(redis_server.url) as connection:
        try:
            service.start_api()
            with service.client() as client:
                assert client.get("/readyz").status_code == 503  # no worker
                assert client.get("/readyz", params={"workers": "false"}).status_code == 200
                # A first worker creates the group; KEDA would see lag 0 then scale it back to zero.
                first = service.start_worker("w0")
                service.wait_workers({"w0"})
                first.terminate()
                first.wait(timeout=30)
                wait_until(lambda: "w0" not in service.live_workers(), 30, "the worker to be gone")
                lags, job_ids = [], []
                for seed in range(6):
                    response = client.post("/v1/jobs", files=[("image", (f"{seed}.png", png_bytes(seed)))],
                                           data={"labels": LABELS, "method": "zeroshot"})
                    assert response.status_code == 202, response.text  # queued with no worker up
                    job_ids.append(response.json()["job_id"])
                    lags.append(keda_lag(connection, stream))
                assert lags == [1, 2, 3, 4, 5, 6]  # the backlog, job by job
                refused = client.post("/v1/jobs", files=[("image", ("r.png", png_bytes(9)))],
                                      data={"labels": LABELS, "method": "rlcf"})
                assert refused.status_code == 503 and refused.json()["code"] == "no_capable_worker"
            service.start_worker("w1")  # what KEDA does on a lag above zero
            states = end_states(service, "alice", job_ids, timeout_s=120)
            assert set(states.values()) == {"done"}
            wait_until(lambda: keda_lag(connection, stream) == 0, 10, "the lag to return to zero")
        finally:
            service.stop()
