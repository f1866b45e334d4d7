"""Tenant isolation, route by route: Alice creates one of every kind of resource (a job, a label
set with exemplars, retained images, a fine-tune and its model version, a label-set pointer, TDA
state, MLLM rectifications); Bob then tries every route of the API's OpenAPI document on each of
them, and names them in request bodies. Every attempt answers 404 (or, for a listing, shows none
of Alice's names), and Alice's resources are unchanged afterwards. A route added to the API
without saying here how it treats another tenant's resources fails the test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.integration.conftest import LABELS, Service, make_service, png_bytes, sse_events, wait_until
from tests.openai_standin import StandInMLLM

SECRET_LABELS = ["alice-only-ruby", "alice-only-sapphire", "alice-only-emerald"]
SET = "alice-private-set"


@pytest.fixture(scope="module")
def world(redis_server, tmp_path_factory) -> Iterator[tuple[Service, dict[str, str]]]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("tenancy")
    mllm = StandInMLLM().start()
    service = make_service(redis_server.url, tmp, TTA_MODEL_STORE=str(tmp / "store"),
                           TTA_MLLM=f"openai:{mllm.base_url}", TTA_MLLM_MODEL="standin-vl",
                           TTA_LEASE_S="5")
    service.start_api()
    service.start_worker("w1")
    service.wait_workers({"w1"})
    try:
        with service.client("alice") as alice:
            yield service, alice_resources(alice)
    finally:
        service.stop()
        mllm.stop()


def classify(client: httpx.Client, label_set: str, method: str, seed: int) -> dict[str, Any]:
    options = json.dumps({"n_views": 8} if method in ("tpt", "tda") else {})
    response = client.post("/v1/classify", files=[("image", ("a.png", png_bytes(seed)))],
                           data={"label_set": label_set, "method": method, "options": options})
    assert response.status_code == 200, response.text
    return dict(response.json())


def alice_resources(alice: httpx.Client) -> dict[str, str]:
    exemplars = [(f"exemplar:{label}", (f"{i}.png", png_bytes(300 + i)))
                 for i, label in enumerate(SECRET_LABELS)]
    created = alice.post("/v1/label-sets", data={"name": SET, "labels": ",".join(SECRET_LABELS)},
                         files=exemplars)
    assert created.status_code == 201, created.text
    assert alice.put(f"/v1/label-sets/{SET}/retention", json={"enabled": True}).status_code == 200
    job_id = classify(alice, SET, "tpt", 1)["job_id"]
    for seed in range(2, 6):
        classify(alice, SET, "tpt", seed)
    classify(alice, SET, "tda", 7)
    classify(alice, SET, "mllm", 8)
    started = alice.post("/v1/finetunes", json={"label_set": SET, "source": "tpt", "hyperparameters": {
        "epochs": 1, "batch_size": 4, "holdout_fraction": 0.2}})
    assert started.status_code == 202, started.text
    finetune_id = started.json()["finetune_id"]
    with alice.stream("GET", started.json()["events_url"]) as stream:
        version = list(sse_events(stream))[-1][2]["model"]
    assert alice.put(f"/v1/label-sets/{SET}/model", json={"model": version}).status_code == 200
    return {"job_id": job_id, "finetune_id": finetune_id, "label_set": SET, "version": version}


def snapshot(alice: httpx.Client, mine: dict[str, str]) -> dict[str, Any]:
    """What Alice sees of her resources (compared before and after Bob's attempts)."""
    return {
        "job": alice.get(f"/v1/jobs/{mine['job_id']}").json(),
        "finetune": alice.get(f"/v1/finetunes/{mine['finetune_id']}").json(),
        "label_set": alice.get(f"/v1/label-sets/{SET}").json(),
        "retention": alice.get(f"/v1/label-sets/{SET}/retention").json(),
        "pointer": alice.get(f"/v1/label-sets/{SET}/model").json(),
        "versions": alice.get("/v1/models").json()["versions"],
        "rectifications": alice.get("/v1/rectifications").text,
        "usage": alice.get("/v1/quotas").json(),
        "drift": alice.get("/v1/drift").json(),
    }


NO_TENANT_RESOURCE = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/v1/methods"),
                      ("get", "/v1/samples")}
"""Routes that touch no tenant's resources (deployment information)."""
LISTINGS = {("get", "/v1/label-sets"), ("get", "/v1/models"), ("get", "/v1/rectifications"),
            ("get", "/v1/quotas"), ("get", "/v1/drift")}
"""Routes that list the caller's resources: another tenant's must never appear."""


def attempts(mine: dict[str, str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Bob's requests on Alice's resources, per route: each must be answered 404."""
    image = [("image", ("b.png", png_bytes(99)))]
    submit = [{"files": image, "data": {"label_set": SET}},
              {"files": image, "data": {"labels": ",".join(LABELS), "model": mine["version"]}},
              {"json": {"images": [base64.b64encode(png_bytes(98)).decode()], "labels": LABELS,
                        "model": mine["version"]}, "field": "model"}]
    return {
        ("post", "/v1/classify"): submit,
        ("post", "/v1/jobs"): submit,
        ("get", "/v1/jobs/{job_id}"): [{}],
        ("get", "/v1/jobs/{job_id}/events"): [{}, {"headers": {"Last-Event-ID": "0"}}],
        ("get", "/v1/finetunes/{finetune_id}"): [{}],
        ("delete", "/v1/finetunes/{finetune_id}"): [{}],
        ("post", "/v1/finetunes"): [{"json": {"label_set": SET}},
                                    {"json": {"label_set": "bobs-set", "from_model": mine["version"]},
                                     "field": "from_model"}],
        ("get", "/v1/label-sets/{name}"): [{}],
        ("delete", "/v1/label-sets/{name}"): [{}],
        ("get", "/v1/label-sets/{name}/retention"): [{}],
        ("put", "/v1/label-sets/{name}/retention"): [{"json": {"enabled": False}}],
        ("get", "/v1/label-sets/{name}/model"): [{}],
        ("put", "/v1/label-sets/{name}/model"): [{"json": {"model": None}}],
        ("post", "/v1/label-sets/{name}/model/rollback"): [{}],
        ("post", "/v1/label-sets"): [],  # creates Bob's own set: checked below, not a 404
        ("delete", "/v1/models/{name}"): [{"path": {"name": mine["version"]}}],
        ("delete", "/v1/method-state/{method}"): [],  # answers reset: false for Bob: checked below
        ("delete", "/v1/drift"): [],  # the same
    }


def test_another_tenant_can_use_none_of_a_tenants_resources_on_any_route(world):
    service, mine = world
    secrets = [SET, *SECRET_LABELS, mine["version"], mine["job_id"], mine["finetune_id"]]
    with service.client("alice") as alice, service.client("bob") as bob:
        # Bob's own label set with retained answers, so a fine-tune of his gets as far as its
        # starting model.
        assert bob.post("/v1/label-sets", json={"name": "bobs-set", "labels": LABELS}).status_code == 201
        assert bob.put("/v1/label-sets/bobs-set/retention", json={"enabled": True}).status_code == 200
        for seed in (10, 11):
            classify(bob, "bobs-set", "tpt", seed)
        before = snapshot(alice, mine)

        routes = {(method, path) for path, operations in service_openapi(bob)["paths"].items()
                  for method in operations}
        table = attempts(mine)
        unaccounted = routes - set(table) - NO_TENANT_RESOURCE - LISTINGS
        assert not unaccounted, f"say how these routes treat another tenant's resources: {unaccounted}"
        for (method, template), tries in table.items():
            for attempt in tries:
                params = {"job_id": mine["job_id"], "finetune_id": mine["finetune_id"], "name": SET,
                          "method": "tda", **attempt.get("path", {})}
                path = template.format(**params)
                response = bob.request(method.upper(), path, files=attempt.get("files"),
                                       data=attempt.get("data"), json=attempt.get("json"),
                                       headers=attempt.get("headers"))
                sent = json.dumps({k: v for k, v in attempt.items() if k != "files"})
                what = f"{method.upper()} {path} {sent}"
                assert response.status_code == 404, (what, response.status_code, response.text)
                body = response.json()
                assert body["code"] == "not_found", what
                if "field" in attempt:
                    assert body["field"] == attempt["field"], (what, body)
                # (the message may name what Bob sent: he knew that already)
                assert not any(secret in response.text for secret in secrets if secret not in sent
                               and secret not in path), what

        for method, path in LISTINGS:
            text = bob.request(method.upper(), path).text
            assert not any(secret in text for secret in secrets), (path, text)
        reset = bob.delete("/v1/method-state/tda", params={"label_set": SET})
        assert reset.status_code == 200 and reset.json()["reset"] is False  # Bob had none; Alice's stays
        reset = bob.delete("/v1/drift", params={"label_set": SET})
        assert reset.status_code == 200 and reset.json()["reset"] is False  # the same for drift
        bobs = bob.post("/v1/label-sets", json={"name": SET, "labels": LABELS})
        assert bobs.status_code == 201  # a set of Bob's own under the same name ...
        assert bob.delete(f"/v1/label-sets/{SET}").status_code == 200  # ... and gone again

        assert snapshot(alice, mine) == before
        tda_keys = redis.Redis.from_url(service.env["TTA_REDIS_URL"]).keys(
            f"{service.env['TTA_REDIS_PREFIX']}:method-state:tda:alice|{SET}")
        assert len(tda_keys) == 1  # Alice's TDA caches are still there
        # Alice's version still answers her label set's requests.
        assert classify(alice, SET, "zeroshot", 20)["results"][0]["metrics"]["model"] == mine["version"]


def service_openapi(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json())


def test_a_tenants_resources_are_listed_and_counted_for_it_alone(world):
    service, mine = world
    with service.client("alice") as alice:
        usage = {row["resource"]: row for row in alice.get("/v1/quotas").json()["resources"]}
        assert set(usage) == {"jobs", "label_sets", "finetunes", "model_versions", "retained_images",
                              "method_state", "drift", "rectifications"}
        assert usage["label_sets"]["used"] >= 1 and usage["model_versions"]["used"] >= 1
        assert usage["rectifications"]["used"] >= 1 and usage["method_state"]["used"] >= 1
        assert usage["drift"]["used"] >= 1
        assert usage["retained_images"]["used"] > 0
        assert all(row["limit"] > 0 and row["quota"] and row["lifetime"] for row in usage.values())
        models = alice.get("/v1/models").json()
        assert mine["version"] in [v["name"] for v in models["versions"]]
        wait_until(lambda: any(mine["version"] in w["resident_versions"]
                               for w in alice.get("/v1/models").json()["workers"]), 10,
                   "the worker to report Alice's resident version")
    with service.client("bob") as bob:
        assert all(mine["version"] not in w["resident_versions"]
                   for w in bob.get("/v1/models").json()["workers"])
