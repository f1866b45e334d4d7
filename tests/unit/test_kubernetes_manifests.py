"""The Kubernetes manifests (deploy/kubernetes/), checked where no cluster runs: every built-in
resource against the Kubernetes schemas (kubernetes-validate, strict), KEDA's against KEDA's
published models (cloudcoil-models-keda, no field it does not know), and what they say against
the service: the streams KEDA watches are the routes the worker reads, the dashboard is the
compose stack's, the API stays ready while workers are scaled to zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication

from contract.catalog import method_names
from service.queue.keys import GROUP, Keys
from service.queue.routing import worker_routes

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy/kubernetes"
KUBERNETES_VERSION = "1.30.0"
KEDA_MODELS = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication}


def documents() -> list[tuple[str, dict[str, Any]]]:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    return [(name, doc) for name in listed
            for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def test_kustomization_lists_every_manifest_file():
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    files = [p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(files)


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_resource_validates_against_its_schema(name, doc):
    if doc["apiVersion"].startswith("keda.sh/"):
        model = KEDA_MODELS[doc["kind"]].model_validate(doc)
        unknown = dropped(doc, model.model_dump(by_alias=True, exclude_none=True))
        assert unknown == [], f"fields KEDA does not know: {unknown}"
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert doc["metadata"].get("namespace", "tta") == "tta"


def dropped(given: Any, kept: Any, path: str = "") -> list[str]:
    """Keys of ``given`` that the model did not keep (it ignores unknown fields)."""
    if isinstance(given, dict):
        return [missing for key, value in given.items()
                for missing in ([f"{path}.{key}"] if key not in kept
                                else dropped(value, kept[key], f"{path}.{key}"))]
    if isinstance(given, list):
        return [missing for i, (g, k) in enumerate(zip(given, kept, strict=True))
                for missing in dropped(g, k, f"{path}[{i}]")]
    return []


def test_keda_watches_every_route_the_worker_reads():
    (worker,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "tta-worker-world"]
    (scaled,) = by_kind("ScaledObject")
    (config,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "tta-config"]
    env = {e["name"]: e.get("value") for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    keys = Keys(config["data"]["TTA_REDIS_PREFIX"])
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0 and worker["spec"]["replicas"] == 0
    watched = {t["metadata"]["stream"] for t in scaled["spec"]["triggers"]}
    assert watched == {keys.jobs(r) for r in worker_routes(method_names(), env["TTA_MODEL"])}
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "redis-streams" and trigger["metadata"]["consumerGroup"] == GROUP
        assert "lagCount" in trigger["metadata"]  # (the mode that scales from and to zero)


def test_the_api_stays_ready_and_queues_while_workers_are_scaled_to_zero():
    (api,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "tta-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?workers=false"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (config,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "tta-config"]
    assert config["data"]["TTA_SCALE_TO_ZERO_METHODS"] == "*"


def test_the_dashboard_configmap_is_the_compose_stacks_dashboard():
    (dashboard,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "tta-grafana-dashboard"]
    assert dashboard["data"]["tta.json"].rstrip("\n") == \
        (ROOT / "docker/grafana/dashboards/tta.json").read_text().rstrip("\n")
