"""A request is admitted only if a live worker can run its method and every method it calls:
here the only worker has no reward model, so ``auto``'s default ladder (which ends in RLCF) is
refused at once, naming what is missing, and a ladder without RLCF runs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.conftest import LABELS, Service, make_service, png_bytes


@pytest.fixture(scope="module")
def no_reward(redis_server, tmp_path_factory) -> Iterator[Service]:
    svc = make_service(redis_server.url, tmp_path_factory.mktemp("capability"), TTA_REWARD_MODEL="none")
    svc.start_api()
    svc.start_worker("plain")
    svc.wait_workers({"plain"})
    yield svc
    svc.stop()


def classify(service: Service, method: str, options: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    with service.client() as client:
        return client.post("/v1/classify", files=[("image", ("a.png", png_bytes(3)))],
                           data={"labels": LABELS, "method": method, "options": json.dumps(options or {})})


def test_a_method_whose_tiers_need_a_reward_model_is_refused_naming_it(no_reward):
    refused = classify(no_reward, "auto")
    assert refused.status_code == 503 and refused.json()["code"] == "no_capable_worker"
    message = refused.json()["message"]
    assert "'auto' (calling tda, rlcf)" in message and "reward model" in message
    assert refused.headers["Retry-After"]
    assert classify(no_reward, "rlcf").status_code == 503


def test_a_ladder_the_worker_can_run_is_answered(no_reward):
    answered = classify(no_reward, "auto", {"tiers": "tda", "threshold": 1.0})
    assert answered.status_code == 200, answered.text
    assert answered.json()["results"][0]["metrics"]["tier"] == "tda"
