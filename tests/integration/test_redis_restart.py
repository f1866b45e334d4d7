"""Redis goes away and comes back: the API answers 503 meanwhile, then recovers without a
restart; the worker reconnects and serves again."""

from __future__ import annotations

import pytest

from service.redis_server import PrivateRedis
from tests.integration.conftest import LABELS, make_service, png_bytes, wait_until


@pytest.fixture
def own_redis(tmp_path):  # type: ignore[no-untyped-def]
    server = PrivateRedis(tmp_path / "redis", persist=True).start()
    yield server
    server.stop()


def classify(client):  # type: ignore[no-untyped-def]
    return client.post("/v1/classify", files=[("image", ("a.png", png_bytes()))], data={"labels": LABELS})


def test_api_answers_503_while_redis_is_down_then_recovers(own_redis, tmp_path):
    service = make_service(own_redis.url, tmp_path)
    service.start_api()
    service.start_worker("w1")
    try:
        service.wait_workers({"w1"})
        with service.client() as client:
            assert classify(client).status_code == 200
            own_redis.stop()
            down = classify(client)
            assert down.status_code == 503 and down.json()["code"] == "backend_unavailable"
            assert down.headers["Retry-After"] == "2"
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200  # the process itself is fine

            own_redis.start()  # same port, same data directory
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, "readiness after restart")
            after = classify(client)
            assert after.status_code == 200, after.text
            assert after.json()["results"][0]["label"] in LABELS
        assert service.api is not None and service.api.poll() is None
        assert service.workers["w1"].poll() is None
    finally:
        service.stop()
