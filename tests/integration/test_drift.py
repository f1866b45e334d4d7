"""Input drift over the real service: the worker observes every classify answer in the same
Lua step as its result, the API's report is what the in-process mirror (the drift bench's)
computes from the same answers, a key sees only its own label sets, the score is exported to
Prometheus per key, a reset starts a new reference, and the per-key scope quota holds."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.queue.drift import DriftWindow, observe
from tests.integration.conftest import LABELS, Service, make_service, png_bytes

REFERENCE, WINDOW = 10, 4


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[Service]:
    svc = make_service(redis_server.url, tmp_path_factory.mktemp("drift"),
                       TTA_DRIFT_REFERENCE_SIZE=str(REFERENCE), TTA_DRIFT_WINDOW_SIZE=str(WINDOW),
                       TTA_MAX_DRIFT_SCOPES_PER_KEY="2")
    svc.start_api()
    svc.start_worker("w1")
    svc.wait_workers({"w1"})
    yield svc
    svc.stop()


def classify(client: httpx.Client, seeds: range, labels: list[str] = LABELS,
             method: str = "zeroshot") -> list[dict[str, Any]]:
    """One request with these images (a zero-shot job's images are answered as one batch)."""
    response = client.post("/v1/classify", files=[("image", (f"{s}.png", png_bytes(s))) for s in seeds],
                           data={"labels": labels, "method": method})
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def scopes(client: httpx.Client) -> dict[str, dict[str, Any]]:
    body = client.get("/v1/drift").json()
    assert (body["reference_size"], body["window_size"], body["threshold"]) == (REFERENCE, WINDOW, 6.0)
    return {scope["scope"]: scope for scope in body["scopes"]}


def test_the_report_is_the_mirrors_on_the_same_answers_and_a_key_sees_only_its_own(service):
    mirror = DriftWindow(REFERENCE, WINDOW)
    with service.client("alice") as alice, service.client("bob") as bob:
        # Two zero-shot jobs of 6 images (each answered as one batch), then 3 tpt jobs.
        answers = [*classify(alice, range(0, 6)), *classify(alice, range(6, 12)),
                   *(r for s in (12, 13, 14) for r in classify(alice, range(s, s + 1), method="tpt"))]
        for answer in answers:
            expected = mirror.add(observe(answer, LABELS))  # type: ignore[arg-type]
        (inline,) = [s for s in scopes(alice).values()]
        assert inline["reference_n"] == REFERENCE and inline["window_n"] == WINDOW
        assert inline["score"] == pytest.approx(expected.score, abs=2e-3) and inline["score"] is not None
        assert {name: round(stat["z"], 2) for name, stat in inline["statistics"].items()} == \
            pytest.approx({name: s.z for name, s in expected.shifts.items()}, abs=2e-2)
        assert scopes(bob) == {}
        # The score goes to Prometheus under the key's name, and only as a number.
        metrics = service.client(None).get("/metrics").text
        exported = re.search(r'^tta_drift_score\{tenant="alice"\} (\S+)$', metrics, re.M)
        assert exported and float(exported.group(1)) == pytest.approx(inline["score"], abs=2e-3)
        assert 'tenant="bob"' not in metrics


def test_a_reset_forgets_the_lists_and_the_scope_quota_holds(service):
    with service.client("alice") as alice:
        classify(alice, range(30, 32), labels=["sun", "moon"])  # alice's second scope: her quota
        assert len(scopes(alice)) == 2
        classify(alice, range(32, 34), labels=["up", "down"])  # a third: not observed
        assert len(scopes(alice)) == 2
        usage = {u["resource"]: u for u in alice.get("/v1/quotas").json()["resources"]}
        assert (usage["drift"]["used"], usage["drift"]["limit"]) == (2, 2)
        reset = alice.delete("/v1/drift", params={"labels": ["sun", "moon"]})
        assert reset.status_code == 200 and reset.json()["reset"] is True
        assert len(scopes(alice)) == 1
        classify(alice, range(34, 35), labels=["up", "down"])  # room again
        assert len(scopes(alice)) == 2
        again = alice.delete("/v1/drift", params={"labels": ["sun", "moon"]})
        assert again.json()["reset"] is False
        bad = alice.delete("/v1/drift")
        assert bad.status_code == 422 and bad.json()["field"] == "label_set"


def test_deleting_a_label_set_drops_its_drift(service):
    with service.client("bob") as bob:
        assert bob.post("/v1/label-sets", json={"name": "mine", "labels": LABELS}).status_code == 201
        response = bob.post("/v1/classify", files=[("image", ("a.png", png_bytes(40)))],
                            data={"label_set": "mine", "options": json.dumps({})})
        assert response.status_code == 200, response.text
        assert list(scopes(bob)) == ["mine"]
        assert bob.delete("/v1/label-sets/mine").status_code in (200, 204)
        assert scopes(bob) == {}
