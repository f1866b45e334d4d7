"""Label sets with exemplars and the mllm method through the whole service: a real redis-server
(persisting), the API, a worker whose MLLM is the OpenAI-protocol stand-in server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from service.redis_server import PrivateRedis
from tests.integration.conftest import LABELS, Service, make_service, png_bytes, sse_events, wait_until
from tests.openai_standin import StandInMLLM


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Service, PrivateRedis, StandInMLLM]]:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("mllm")
    redis_server = PrivateRedis(tmp / "redis", persist=True).start()
    mllm = StandInMLLM().start()
    service = make_service(redis_server.url, tmp, TTA_MLLM=f"openai:{mllm.base_url}",
                           TTA_MLLM_MODEL="standin-vl", TTA_MLLM_TIMEOUT_S="5")
    service.start_api()
    service.start_worker("w1")
    service.wait_workers({"w1"})
    yield service, redis_server, mllm
    service.stop()
    mllm.stop()
    redis_server.stop()


def exemplar_files(per_class: int = 3, skip: str | None = None) -> list[tuple[str, tuple[str, bytes]]]:
    return [(f"exemplar:{label}", (f"{i}-{n}.png", png_bytes(200 + 10 * i + n)))
            for i, label in enumerate(LABELS) if label != skip for n in range(per_class)]


def create(client, name: str, **kwargs):  # type: ignore[no-untyped-def]
    data = {"name": name, "labels": LABELS}
    return client.post("/v1/label-sets", files=exemplar_files(**kwargs), data=data)


def test_create_show_and_keep_label_sets_private(world):
    service, _, _ = world
    with service.client("alice") as alice:
        created = create(alice, "shapes")
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["exemplars"] == {label: 3 for label in LABELS} and body["prepare_job_id"]
        job_url = f"/v1/jobs/{body['prepare_job_id']}"
        job = wait_until(lambda: (j := alice.get(job_url).json())["status"] == "done" and j, 60,
                         "the transition matrix")
        assert job["kind"] == "prepare_label_set"
        pairs = job["results"][0]["confused_pairs"]
        shown = alice.get("/v1/label-sets/shapes").json()
        assert shown["confused_pairs"] == {"tta-tiny:random": pairs}
        assert len(pairs) == 10 and all(p["true"] in LABELS and p["taken_for"] in LABELS for p in pairs)
        listed = alice.get("/v1/label-sets").json()["label_sets"]
        assert [(s["name"], s["shared"]) for s in listed] == [("shapes", False), ("world-25", True)]
        by_set = alice.post("/v1/classify", files=[("image", ("a.png", png_bytes(1)))],
                            data={"label_set": "shapes"})
        assert by_set.status_code == 200 and by_set.json()["labels"] == LABELS
    with service.client("bob") as bob:
        assert bob.get("/v1/label-sets/shapes").status_code == 404
        assert [s["name"] for s in bob.get("/v1/label-sets").json()["label_sets"]] == ["world-25"]  # shared
        refused = bob.post("/v1/classify", files=[("image", ("a.png", png_bytes(1)))],
                           data={"label_set": "shapes"})
        assert refused.status_code == 404 and refused.json()["field"] == "label_set"


def test_mllm_rectifies_to_the_supported_candidate_and_logs_it(world):
    service, _, mllm = world
    with service.client("alice") as alice:
        if alice.get("/v1/label-sets/shapes").status_code == 404:
            create(alice, "shapes")
        zeroshot = alice.post("/v1/classify", files=[("image", ("q.png", png_bytes(7)))],
                              data={"label_set": "shapes"}).json()["results"][0]
        mllm.supported = zeroshot["top_k"][-1]["label"]  # the CLIP's least likely of the top 5
        headers = {"Accept": "text/event-stream"}
        with alice.stream("POST", "/v1/classify", headers=headers, files=[("image", ("q.png", png_bytes(7)))],
                          data={"label_set": "shapes", "method": "mllm"}) as response:
            events = list(sse_events(response))
        names = [name for _, name, _ in events]
        assert names[:3] == ["queued", "started", "zeroshot"] and names[-1] == "result"
        progress = [data for _, name, data in events if name == "progress"]
        assert progress[0]["metric"] == "gate" and progress[0]["candidate"] == zeroshot["label"]
        assert {p["candidate"] for p in progress} == set(LABELS)
        result = events[-1][2]
        assert result["label"] == mllm.supported and result["changed"] is True
        assert result["metrics"]["mllm_calls"] == 15 and result["metrics"]["gate_passed"] is False
        assert all(c["p_true"] is not None for c in result["metrics"]["candidates"])

        log = [json.loads(line) for line in alice.get("/v1/rectifications").text.splitlines()]
        assert log[-1]["before"] == zeroshot["label"] and log[-1]["after"] == mllm.supported
        assert log[-1]["label_set"] == "shapes" and len(log[-1]["image_sha256"]) == 64
        assert alice.get("/v1/rectifications", params={"label_set": "other"}).text == ""
        log_key = f"{service.env['TTA_REDIS_PREFIX']}:rectifications:alice"
        ttl = redis.Redis.from_url(service.env["TTA_REDIS_URL"]).ttl(log_key)
        assert 29 * 86_400 < ttl <= 30 * 86_400  # TTA_RECTIFICATIONS_TTL_S after its last decision
    with service.client("bob") as bob:
        assert bob.get("/v1/rectifications").text == ""


def test_mllm_needs_a_label_set_with_exemplars_for_every_class(world):
    service, _, _ = world
    with service.client("alice") as alice:
        plain = alice.post("/v1/classify", files=[("image", ("q.png", png_bytes(2)))],
                           data={"labels": LABELS, "method": "mllm"})
        assert plain.status_code == 422 and plain.json()["field"] == "label_set"
        assert create(alice, "partial", skip="green tree").status_code == 201
        partial = alice.post("/v1/classify", files=[("image", ("q.png", png_bytes(2)))],
                             data={"label_set": "partial", "method": "mllm"})
        assert partial.status_code == 422 and "green tree" in partial.json()["message"]
        bad = alice.post("/v1/label-sets", files=[("exemplar:unicorn", ("u.png", png_bytes(3)))],
                         data={"name": "odd", "labels": LABELS})
        assert bad.status_code == 422 and bad.json()["field"] == "exemplars.unicorn"


def test_label_sets_survive_a_restart_of_everything(world):
    service, redis_server, _ = world
    with service.client("alice") as alice:
        if alice.get("/v1/label-sets/shapes").status_code == 404:
            create(alice, "shapes")
    service.stop()
    redis_server.stop()
    redis_server.start()
    service.workers.clear()
    service.start_api()
    service.start_worker("w1-again")
    service.wait_workers({"w1-again"})
    with service.client("alice") as alice:
        assert alice.get("/v1/label-sets/shapes").json()["exemplars"] == {label: 3 for label in LABELS}
        again = alice.post("/v1/classify", files=[("image", ("q.png", png_bytes(7)))],
                           data={"label_set": "shapes", "method": "mllm"})
        assert again.status_code == 200, again.text
    with service.client("bob") as bob:
        assert bob.get("/v1/label-sets/shapes").status_code == 404


def test_the_bundled_label_set_serves_mllm_out_of_the_box_read_only(world):
    """world-25 (the world's classes with exemplars) is stored by the API for every tenant:
    mllm runs on it without anyone creating a label set; nobody can change it, and each
    tenant's own set of the same name takes its place for that tenant alone."""
    service, _, mllm = world
    with service.client("bob") as bob:
        shown = wait_until(lambda: (r := bob.get("/v1/label-sets/world-25")).status_code == 200 and r.json(),
                           30, "the bundled label set")
        assert shown["shared"] is True and shown["n_labels"] == 25 and set(shown["exemplars"].values()) == {3}
        mllm.supported = "sun"
        answer = bob.post("/v1/classify", files=[("image", ("q.png", png_bytes(3)))],
                          data={"label_set": "world-25", "method": "mllm"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["labels"] == shown["labels"]
        assert answer.json()["results"][0]["metrics"]["mllm_calls"] >= 1
        for change in (lambda: bob.put("/v1/label-sets/world-25/retention", json={"enabled": True}),
                       lambda: bob.put("/v1/label-sets/world-25/model", json={"model": None}),
                       lambda: bob.delete("/v1/label-sets/world-25"),
                       lambda: bob.post("/v1/finetunes", json={"label_set": "world-25"})):
            refused = change()
            assert refused.status_code == 404, refused.text
        own = bob.post("/v1/label-sets", json={"name": "world-25", "labels": LABELS})
        assert own.status_code == 201 and own.json()["shared"] is False
        assert bob.get("/v1/label-sets/world-25").json()["labels"] == LABELS
        assert bob.delete("/v1/label-sets/world-25").status_code == 200
    with service.client("alice") as alice:
        assert alice.get("/v1/label-sets/world-25").json()["shared"] is True  # untouched by bob's
