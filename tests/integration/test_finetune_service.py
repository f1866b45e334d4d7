"""Fine-tuning through the whole service: a real redis-server, the API under uvicorn and a worker
process on tiny models, a model store on disk. Retention, the finetune job with SSE progress,
the new version answering a label set's requests, rollback, cancellation and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file

from tests.integration.conftest import LABELS, Service, make_service, png_bytes, sse_events, wait_until


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("finetune")
    svc = make_service(redis_server.url, tmp, TTA_MODEL_STORE=str(tmp / "store"), TTA_LEASE_S="5")
    svc.start_api()
    svc.start_worker("ft1")
    svc.wait_workers({"ft1"})
    yield svc
    svc.stop()


def classify(client: httpx.Client, seed: int, method: str = "tpt") -> dict:  # type: ignore[type-arg]
    response = client.post("/v1/classify", files=[("image", ("a.png", png_bytes(seed)))],
                           data={"label_set": "shapes", "method": method,
                                 "options": '{"n_views": 8}' if method != "zeroshot" else "{}"})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]  # type: ignore[no-any-return]


def events(client: httpx.Client, url: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    with client.stream("GET", url) as response:
        return [(name, data) for _, name, data in sse_events(response)]


def test_finetune_versions_pointer_and_rollback(service):
    with service.client("alice") as alice, service.client("bob") as bob:
        assert alice.post("/v1/label-sets", json={"name": "shapes", "labels": LABELS}).status_code == 201
        refused = alice.post("/v1/finetunes", json={"label_set": "shapes", "source": "tpt"})
        assert refused.status_code == 422 and refused.json()["field"] == "label_set"
        assert "retention is off" in refused.json()["message"]
        kept = alice.put("/v1/label-sets/shapes/retention", json={"enabled": True, "max_days": 1})
        assert kept.status_code == 200 and kept.json()["enabled"] is True

        answers = [classify(alice, seed) for seed in range(10)]
        assert all(a["metrics"]["model"] == "tta-tiny:random" for a in answers)
        retention = alice.get("/v1/label-sets/shapes/retention").json()
        assert retention["images"] == 10 and retention["bytes"] == sum(len(png_bytes(s)) for s in range(10))

        for bad, field in (({"label_set": "shapes", "hyperparameters": {"lr": "fast"}}, "hyperparameters"),
                           ({"label_set": "shapes", "source": "guess"}, "source"),
                           ({"label_set": "shapes", "extra": 1}, "extra")):
            response = alice.post("/v1/finetunes", json=bad)
            assert response.status_code == 422 and response.json()["field"] == field, response.text
        assert alice.post("/v1/finetunes", json={"label_set": "nope"}).status_code == 404
        assert bob.post("/v1/finetunes", json={"label_set": "shapes"}).status_code == 404

        started = alice.post("/v1/finetunes", json={
            "label_set": "shapes", "source": "tpt",
            "hyperparameters": {"lr": 1e-3, "lr_min": 1e-4, "epochs": 2, "batch_size": 4,
                                "holdout_fraction": 0.2}})
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["matching_images"] == 10
        stream = events(alice, body["events_url"])
        names = [name for name, _ in stream]
        assert names[0] == "queued" and names[1] == "started" and names[-1] == "result"
        epochs = [d for n, d in stream if n == "progress" and d["value"] is not None]
        assert [d["epoch"] for d in epochs] == [0, 1, 2]
        assert all(0 <= d["value"] <= 1 and d["metric"] == "holdout_agreement" for d in epochs)
        result = stream[-1][1]
        name = result["model"]
        assert name.startswith("tta-tiny:random@ft-") and result["manifest"]["n_images"] == 10
        assert result["manifest"]["label_set"] == "shapes" and result["metrics"]["n_holdout"] == 2
        folder = Path(service.env["TTA_MODEL_STORE"]) / "tta-tiny__random" / result["version"]
        assert json.loads((folder / "manifest.json").read_text())["source_job"] == body["finetune_id"]
        assert alice.get(body["job_url"]).json()["model"] == name

        listed = alice.get("/v1/models").json()
        assert [v["name"] for v in listed["versions"]] == [name]
        assert bob.get("/v1/models").json()["versions"] == []
        # Bob cannot point his label set at Alice's version.
        assert bob.post("/v1/label-sets", json={"name": "shapes", "labels": LABELS}).status_code == 201
        denied = bob.put("/v1/label-sets/shapes/model", json={"model": name})
        assert denied.status_code == 404 and denied.json()["field"] == "model"

        pointed = alice.put("/v1/label-sets/shapes/model", json={"model": name})
        assert pointed.status_code == 200 and pointed.json()["model"] == name
        assert classify(alice, 50, "zeroshot")["metrics"]["model"] == name
        assert classify(alice, 51)["metrics"]["model"] == name
        assert classify(bob, 51)["metrics"]["model"] == "tta-tiny:random"
        wait_until(lambda: any(name in (w["resident_versions"] or [])
                               for w in alice.get("/v1/models").json()["workers"]), 10,
                   "the worker to report the resident version")

        # A fine-tune starts from the version its label set points at: at a learning rate too
        # small to move anything, the new version's weights are v1's, not the base model's.
        tiny_lr = {"lr": 1e-12, "lr_min": 1e-12, "epochs": 1, "batch_size": 4, "holdout_fraction": 0.2}
        unknown = alice.post("/v1/finetunes", json={"label_set": "shapes", "from_model": "x@ft-0"})
        assert unknown.status_code == 404 and unknown.json()["field"] == "from_model"
        second = alice.post("/v1/finetunes", json={"label_set": "shapes", "hyperparameters": tiny_lr})
        assert second.status_code == 202, second.text
        v2 = events(alice, second.json()["events_url"])[-1][1]
        assert v2["parent"] == name and v2["manifest"]["parent"] == name
        store = Path(service.env["TTA_MODEL_STORE"]) / "tta-tiny__random"
        w1, w2 = (load_file(store / v / "visual.safetensors") for v in (result["version"], v2["version"]))
        assert all(torch.allclose(w1[k], w2[k], atol=1e-6) for k in w1)
        from_base = alice.post("/v1/finetunes", json={"label_set": "shapes", "from_model": "base",
                                                      "hyperparameters": tiny_lr})
        v3 = events(alice, from_base.json()["events_url"])[-1][1]
        assert v3["parent"] is None
        w3 = load_file(store / v3["version"] / "visual.safetensors")
        assert any(not torch.allclose(w1[k], w3[k], atol=1e-6) for k in w1)  # v1 moved; v3 did not

        back = alice.post("/v1/label-sets/shapes/model/rollback")
        assert back.status_code == 200 and back.json()["model"] is None
        assert classify(alice, 52, "zeroshot")["metrics"]["model"] == "tta-tiny:random"
        again = alice.post("/v1/label-sets/shapes/model/rollback")
        assert again.status_code == 422


def test_cancel_a_running_finetune(service):
    with service.client("alice") as alice:
        started = alice.post("/v1/finetunes", json={
            "label_set": "shapes", "hyperparameters": {"epochs": 1000, "batch_size": 2}})
        assert started.status_code == 202, started.text
        finetune_url = started.json()["job_url"]
        wait_until(lambda: alice.get(finetune_url).json()["status"] == "running", 30,
                   "the fine-tune to start")
        # The worker's only: classify jobs run between the fine-tune's steps, and are answered
        # while it still runs (it would take minutes).
        for seed, method in ((80, "zeroshot"), (81, "tpt"), (82, "zeroshot")):
            assert classify(alice, seed, method)["metrics"]["model"] == "tta-tiny:random"
        assert alice.get(finetune_url).json()["status"] == "running"
        cancel = alice.delete(finetune_url)
        assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
        stream = events(alice, started.json()["events_url"])
        assert stream[-1][0] == "error" and stream[-1][1]["code"] == "cancelled", stream[-1]
        final = alice.get(finetune_url).json()
        assert final["status"] == "failed" and final["model"] is None
        assert alice.delete(finetune_url).json()["cancel_requested"] is False


def test_cli_finetune_against_the_server(service):
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    env = {**service.env, "TTA_API_KEY": service.keys["alice"]}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli.main", "finetune", "start", "--server", service.url,
         "--label-set", "shapes", "--source", "tpt", "--param", "epochs=2", "--param", "batch_size=4",
         "--activate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"].startswith("tta-tiny:random@ft-") and out["activated"] is True
    assert "epoch 2/2" in done.stderr and "held-out agreement" in done.stderr
    with service.client("alice") as alice:
        assert alice.get("/v1/label-sets/shapes/model").json()["model"] == out["model"]
    failed = subprocess.run(
        [sys.executable, "-m", "service.cli.main", "finetune", "point", "shapes", "nope@v1",
         "--server", service.url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "404 not_found" in failed.stderr


def test_a_diverged_finetune_publishes_nothing(redis_server, tmp_path):
    """lr 1 without distillation drives the world policy's loss to NaN (the tiny random model
    only wanders): the fine-tune fails with finetune_unsound and registers no version."""
    world = make_service(redis_server.url, tmp_path, TTA_MODEL="world-policy", TTA_REWARD_MODEL="none",
                         TTA_MODEL_STORE=str(tmp_path / "store"))
    world.start_api()
    world.start_worker("world")
    try:
        world.wait_workers({"world"})
        with world.client("alice") as alice:
            assert alice.post("/v1/label-sets", json={"name": "shapes", "labels": LABELS}).status_code == 201
            alice.put("/v1/label-sets/shapes/retention", json={"enabled": True, "max_days": 1})
            for seed in range(60, 66):
                classify(alice, seed)
            started = alice.post("/v1/finetunes", json={
                "label_set": "shapes", "source": "tpt",
                "hyperparameters": {"lr": 1.0, "lr_min": 1.0, "distill": 0.0, "epochs": 5, "batch_size": 2,
                                    "holdout_fraction": 0.2, "crop_scale_min": 1.0}})
            assert started.status_code == 202, started.text
            last = events(alice, started.json()["events_url"])[-1]
            assert last[0] == "error" and last[1]["code"] == "finetune_unsound", last
            assert "not published" in last[1]["message"] and "nan" in last[1]["message"]
            assert alice.get("/v1/models").json()["versions"] == []
            assert not list((tmp_path / "store").glob("*/*/manifest.json"))
    finally:
        world.stop()


def test_a_broken_version_answers_every_method_with_a_4xx_never_a_5xx(service):
    """A version with NaN weights, as a release before fine-tunes were checked could have
    stored it (made here by hand), answers every method with a 4xx naming the model, never a
    5xx or a reset connection, and the failed jobs read back fine."""
    import redis

    from models.store import Manifest, ModelStore

    with service.client("alice") as alice:
        versions = alice.get("/v1/models").json()["versions"]
        assert versions, "the first test of this module trains a version"
        store = ModelStore(service.env["TTA_MODEL_STORE"])
        base, _, good_version = versions[-1]["name"].rpartition("@")
        weights = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                   for k, v in load_file(store.folder(base, good_version) / "visual.safetensors").items()}
        manifest = Manifest(base=base, version="ft-broken", created_ms=1, owner="alice")
        store.save(manifest, weights)
        registry = f"{service.env['TTA_REDIS_PREFIX']}:versions:alice"
        redis.Redis.from_url(service.env["TTA_REDIS_URL"]).hset(registry, manifest.name,
                                                                json.dumps(manifest.to_dict()))
        assert alice.put("/v1/label-sets/shapes/model", json={"model": manifest.name}).status_code == 200
        for method in ("zeroshot", "tda", "tpt", "rlcf", "rlcf-tune", "zero"):
            response = alice.post("/v1/classify", files=[("image", ("a.png", png_bytes(70)))],
                                  data={"label_set": "shapes", "method": method,
                                        "options": '{"n_views": 8}' if method != "zeroshot" else "{}"})
            assert response.status_code == 422, (method, response.status_code, response.text)
            body = response.json()
            assert body["code"] == "model_load_failed" and body["field"] == "model", body
            assert "non-finite weights" in body["message"]
            job = alice.get(f"/v1/jobs/{body['job_id']}")
            assert job.status_code == 200 and job.json()["status"] == "failed"
        assert alice.post("/v1/label-sets/shapes/model/rollback").status_code == 200
