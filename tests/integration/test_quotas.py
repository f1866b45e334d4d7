"""Quotas and lifetimes of what a tenant stores, through the whole service with small limits:
label sets, exemplars (count and bytes), retention, fine-tunes (unfinished, images x epochs),
model versions, TDA state. A quota answers 403 quota_exceeded naming the field; deleting
frees room; what has a lifetime carries a Redis TTL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.integration.conftest import LABELS, Service, make_service, png_bytes, sse_events, wait_until

LIMITS = {"TTA_MAX_LABEL_SETS_PER_KEY": "2", "TTA_MAX_EXEMPLARS_PER_LABEL_SET": "4",
          "TTA_MAX_EXEMPLAR_BYTES_PER_LABEL_SET": "20000", "TTA_MAX_FINETUNES_PER_KEY": "1",
          "TTA_MAX_VERSIONS_PER_KEY": "1", "TTA_MAX_RETAINED_BYTES_PER_KEY": "1000000",
          "TTA_MAX_FINETUNE_IMAGE_EPOCHS": "5000", "TTA_MAX_METHOD_STATE_GROUPS_PER_KEY": "2",
          "TTA_METHOD_STATE_TTL_S": "600"}


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("quotas")
    svc = make_service(redis_server.url, tmp, TTA_MODEL_STORE=str(tmp / "store"), **LIMITS)
    svc.start_api()
    svc.start_worker("q1")
    svc.wait_workers({"q1"})
    yield svc
    svc.stop()


def usage(client: httpx.Client) -> dict[str, int]:
    return {row["resource"]: row["used"] for row in client.get("/v1/quotas").json()["resources"]}


def refused(response: httpx.Response, status: int, code: str, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["code"], body["field"]) == (code, field), body


def test_label_sets_and_their_exemplars_have_quotas(service):
    with service.client("alice") as alice:
        for name in ("one", "two"):
            assert alice.post("/v1/label-sets", json={"name": name, "labels": LABELS}).status_code == 201
        refused(alice.post("/v1/label-sets", json={"name": "three", "labels": LABELS}),
                403, "quota_exceeded", "name")
        assert alice.post("/v1/label-sets", json={"name": "two", "labels": LABELS[:3]}).status_code == 201
        assert usage(alice)["label_sets"] == 2
        deleted = alice.delete("/v1/label-sets/two")
        assert deleted.status_code == 200 and alice.get("/v1/label-sets/two").status_code == 404
        assert alice.post("/v1/label-sets", json={"name": "three", "labels": LABELS}).status_code == 201

        five = {LABELS[0]: [base64.b64encode(png_bytes(i)).decode() for i in range(5)]}
        refused(alice.post("/v1/label-sets", json={"name": "three", "labels": LABELS, "exemplars": five}),
                422, "invalid_input", "exemplars")
        files = [(f"exemplar:{LABELS[0]}", (f"{i}.png", png_bytes(i))) for i in range(5)]
        refused(alice.post("/v1/label-sets", data={"name": "three", "labels": ",".join(LABELS)}, files=files),
                422, "invalid_input", "exemplars")
        big = [(f"exemplar:{label}", ("big.png", png_bytes(i, size=(160, 120))))
               for i, label in enumerate(LABELS[:4])]
        refused(alice.post("/v1/label-sets", data={"name": "three", "labels": ",".join(LABELS)}, files=big),
                413, "request_too_large", "exemplars")
        assert alice.get("/v1/label-sets/three").json()["n_exemplars"] == 0  # unchanged by the refusals
        alice.delete("/v1/label-sets/three")
        alice.delete("/v1/label-sets/one")


def classify(client: httpx.Client, label_set: str, seed: int) -> None:
    response = client.post("/v1/classify", files=[("image", ("a.png", png_bytes(seed)))],
                           data={"label_set": label_set, "method": "tpt", "options": '{"n_views": 8}'})
    assert response.status_code == 200, response.text


def test_retention_finetunes_and_versions_have_quotas(service):
    with service.client("bob") as bob:
        assert bob.post("/v1/label-sets", json={"name": "ft", "labels": LABELS}).status_code == 201
        refused(bob.put("/v1/label-sets/ft/retention", json={"enabled": True, "max_bytes": 2_000_000}),
                403, "quota_exceeded", "max_bytes")
        assert bob.put("/v1/label-sets/ft/retention",
                       json={"enabled": True, "max_bytes": 900_000}).status_code == 200
        assert bob.post("/v1/label-sets", json={"name": "other", "labels": LABELS}).status_code == 201
        refused(bob.put("/v1/label-sets/other/retention", json={"enabled": True, "max_bytes": 200_000}),
                403, "quota_exceeded", "max_bytes")  # 900,000 + 200,000 > 1,000,000
        for seed in range(6):
            classify(bob, "ft", seed)

        refused(bob.post("/v1/finetunes", json={"label_set": "ft", "hyperparameters": {"epochs": 1000}}),
                422, "invalid_input", "hyperparameters.epochs")  # 6 images x 1000 > 5000
        long = bob.post("/v1/finetunes", json={"label_set": "ft", "hyperparameters": {
            "epochs": 800, "batch_size": 1}})
        assert long.status_code == 202, long.text
        refused(bob.post("/v1/finetunes", json={"label_set": "ft", "hyperparameters": {"epochs": 1}}),
                403, "quota_exceeded", "label_set")  # one unfinished at a time
        assert usage(bob)["finetunes"] == 1
        bob.delete(long.json()["job_url"])
        wait_until(lambda: bob.get(long.json()["job_url"]).json()["status"] == "failed", 60,
                   "the cancelled fine-tune to end")

        short = bob.post("/v1/finetunes", json={"label_set": "ft", "hyperparameters": {
            "epochs": 1, "batch_size": 4, "holdout_fraction": 0.2}})
        assert short.status_code == 202, short.text
        with bob.stream("GET", short.json()["events_url"]) as stream:
            version = list(sse_events(stream))[-1][2]["model"]
        refused(bob.post("/v1/finetunes", json={"label_set": "ft", "hyperparameters": {"epochs": 1}}),
                403, "quota_exceeded", "label_set")  # one version is the quota
        assert bob.put("/v1/label-sets/ft/model", json={"model": version}).status_code == 200
        refused(bob.delete(f"/v1/models/{version}"), 409, "in_use", "name")
        assert bob.put("/v1/label-sets/ft/model", json={"model": None}).status_code == 200
        deleted = bob.delete(f"/v1/models/{version}")
        assert deleted.status_code == 200 and deleted.json() == {"model": version, "deleted": True}
        assert bob.get("/v1/models").json()["versions"] == []
        refused(bob.put("/v1/label-sets/ft/model", json={"model": version}), 404, "not_found", "model")
        again = bob.post("/v1/finetunes", json={"label_set": "ft", "hyperparameters": {"epochs": 1}})
        assert again.status_code == 202, again.text


def test_tda_state_lives_for_its_ttl_and_a_key_keeps_its_newest_groups(service):
    keys = redis.Redis.from_url(service.env["TTA_REDIS_URL"])
    prefix = service.env["TTA_REDIS_PREFIX"]
    with service.client("alice") as carol:
        label_lists: list[Any] = [LABELS, LABELS[:4], LABELS[1:]]
        for seed, labels in enumerate(label_lists):
            response = carol.post("/v1/classify", files=[("image", ("a.png", png_bytes(seed)))],
                                  data={"labels": ",".join(labels), "method": "tda",
                                        "options": json.dumps({"n_views": 8})})
            assert response.status_code == 200, response.text
        groups = keys.keys(f"{prefix}:method-state:tda:alice|*")
        states = [g for g in groups if not g.endswith(b":applied")]
        assert len(states) == 2  # the quota: the least recently updated group went
        assert all(0 < keys.ttl(key) <= 600 for key in groups)
        assert usage(carol)["method_state"] == 2
