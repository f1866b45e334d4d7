"""TDA's shared state in a real redis-server: updated at most once per job image (also when a
job is redelivered or two workers race), reset through the API, scoped per key and label set."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from adapters.engine import Engine, RunContext
from contract.state_scope import state_key_for
from service.queue.keys import Keys
from service.worker.method_state import RedisStateStore
from tests.conftest import LABELS, make_image
from tests.integration.conftest import Service, make_service, png_bytes


@pytest.fixture
def store(redis_server) -> RedisStateStore:
    return RedisStateStore(redis.Redis.from_url(redis_server.url), Keys(f"test-{uuid.uuid4().hex[:8]}"))


def _append(item: bytes):  # type: ignore[no-untyped-def]
    return lambda old: (old or b"") + item


def test_an_update_id_is_applied_once(store):
    state, applied = store.update("tda:alice|s", "m", "job1/0", _append(b"a"))
    assert (state, applied) == (b"a", True)
    state, applied = store.update("tda:alice|s", "m", "job1/0", _append(b"a"))  # redelivered
    assert (state, applied) == (b"a", False)
    assert store.update("tda:alice|s", "m", "job1/1", _append(b"b")) == (b"ab", True)
    assert store.update("tda:alice|s", "m", None, _append(b"c")) == (b"abc", True)
    assert store.read("tda:alice|s", "m") == b"abc"


def test_racing_workers_lose_no_update_and_apply_none_twice(redis_server, store):
    """Two clients (as two workers) each apply the same 30 update ids: every id lands once."""
    def work() -> None:
        mine = RedisStateStore(redis.Redis.from_url(redis_server.url), store.keys)
        for i in range(30):
            mine.update("tda:alice|race", "m", f"job{i}/0", _append(b"%d," % i))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = (store.read("tda:alice|race", "m") or b"").decode().rstrip(",").split(",")
    assert sorted(entries, key=int) == [str(i) for i in range(30)]


def test_tda_cache_counts_a_redelivered_job_image_once(models, store):
    engine = Engine(models, state_store=store)
    image = make_image(7)
    key = state_key_for("alice", "shapes", LABELS)
    first = engine.classify("tda", image, LABELS, context=RunContext(state_key=key, update_id="job-a/0"))
    again = engine.classify("tda", image, LABELS, context=RunContext(state_key=key, update_id="job-a/0"))
    assert first.metrics["cache_images"] == 1 and first.metrics["cache_updated"]
    assert again.metrics["cache_images"] == 1 and not again.metrics["cache_updated"]
    assert again.label == first.label and again.score == pytest.approx(first.score, abs=1e-3)
    other = engine.classify("tda", make_image(8), LABELS,
                            context=RunContext(state_key=key, update_id="job-b/0"))
    assert other.metrics["cache_images"] == 2
    # Another tenant's scope starts empty.
    bob = engine.classify("tda", image, LABELS, context=RunContext(
        state_key=state_key_for("bob", "shapes", LABELS), update_id="job-c/0"))
    assert bob.metrics["cache_images"] == 1


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[Service]:
    svc = make_service(redis_server.url, tmp_path_factory.mktemp("state"))
    svc.start_api()
    svc.start_worker("w1")
    svc.wait_workers({"w1"})
    yield svc
    svc.stop()


def _classify_tda(client, seed: int) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/classify", files=[("image", (f"{seed}.png", png_bytes(seed)))],
                           data={"labels": list(LABELS), "method": "tda",
                                 "options": json.dumps({"views": "crops", "n_views": 16})})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def test_tda_state_is_shared_per_key_and_reset_through_the_api(service):
    alice, bob = service.client("alice"), service.client("bob")
    assert _classify_tda(alice, 1)["metrics"]["cache_images"] == 1
    assert _classify_tda(alice, 2)["metrics"]["cache_images"] == 2
    assert _classify_tda(bob, 3)["metrics"]["cache_images"] == 1  # bob's own cache

    reset = bob.delete("/v1/method-state/tda", params={"labels": list(LABELS)})
    assert reset.status_code == 200 and reset.json()["reset"] is True
    assert _classify_tda(alice, 4)["metrics"]["cache_images"] == 3  # alice's untouched

    reset = alice.delete("/v1/method-state/tda", params={"labels": list(LABELS)})
    assert reset.json() == {"method": "tda", "label_set": None, "reset": True}
    assert alice.delete("/v1/method-state/tda", params={"labels": list(LABELS)}).json()["reset"] is False
    assert _classify_tda(alice, 5)["metrics"]["cache_images"] == 1


def test_reset_rejects_what_it_cannot_reset(service):
    alice = service.client("alice")
    not_stateful = alice.delete("/v1/method-state/tpt", params={"label_set": "x"})
    assert not_stateful.status_code in (400, 404, 422)
    assert not_stateful.json()["field"] == "method"
    neither = alice.delete("/v1/method-state/tda")
    assert neither.status_code == 422 and neither.json()["field"] == "label_set"
    assert service.client(None).delete("/v1/method-state/tda", params={"label_set": "x"}).status_code == 401


def test_a_10kb_ctx_init_is_rejected_at_intake(service):
    response = service.client("alice").post(
        "/v1/jobs", files=[("image", ("x.png", png_bytes(0)))],
        data={"labels": list(LABELS), "method": "tpt", "options": json.dumps({"ctx_init": "x" * 10_000})})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_options" and response.json()["field"] == "options.ctx_init"
