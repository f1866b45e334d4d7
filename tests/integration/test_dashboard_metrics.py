"""Every metric the Grafana dashboard and the alert rules query is exported by the running API or
worker, and Prometheus's scrape config names the services the compose file defines."""

from __future__ import annotations

import json
import re

import httpx
import yaml

from service.redis_server import free_port
from tests.integration.conftest import LABELS, ROOT, make_service, png_bytes


def dashboard_metrics() -> set[str]:
    panels = json.loads((ROOT / "docker/grafana/dashboards/tta.json").read_text())["panels"]
    return {name for panel in panels for target in panel["targets"]
            for name in re.findall(r"\btta_[a-z_]+", target["expr"])}


def alert_rules() -> list[dict]:
    rules = yaml.safe_load((ROOT / "docker/prometheus/alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def alert_metrics() -> set[str]:
    return {name for rule in alert_rules() for name in re.findall(r"\btta_[a-z_]+", rule["expr"])}


def exported(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line.startswith("tta_")}


def test_dashboard_queries_only_exported_metrics(redis_server, tmp_path):
    metrics_port = free_port()
    service = make_service(redis_server.url, tmp_path)
    service.start_api()
    service.start_worker("w-metrics", TTA_WORKER_METRICS_PORT=str(metrics_port))
    try:
        service.wait_workers({"w-metrics"})
        with service.client() as client:
            assert client.post("/v1/classify", files=[("image", ("a.png", png_bytes()))],
                               data={"labels": LABELS}).status_code == 200
            names = exported(client.get("/metrics").text)
        names |= exported(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text)
    finally:
        service.stop()
    used = dashboard_metrics()
    assert len(used) >= 15
    assert used <= names, f"dashboard queries metrics nobody exports: {sorted(used - names)}"
    alerting = alert_metrics()
    assert len(alerting) >= 4
    assert alerting <= names, f"alert rules query metrics nobody exports: {sorted(alerting - names)}"


def test_alert_rules_are_loaded_and_documented():
    scrape = (ROOT / "docker/prometheus/prometheus.yml").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in scrape
    assert "./docker/prometheus/alerts.yml:/etc/prometheus/alerts.yml" in compose
    operations = (ROOT / "docs/operations.md").read_text()
    for rule in alert_rules():
        assert rule["alert"] in operations, f"alert {rule['alert']} is not in docs/operations.md"
        assert rule["annotations"]["runbook"].startswith("docs/operations.md#runbook")


def test_prometheus_discovers_the_compose_services():
    scrape = (ROOT / "docker/prometheus/prometheus.yml").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "names: [api]" in scrape and "port: 8000" in scrape
    assert "names: [worker]" in scrape and "port: 9100" in scrape
    assert "\n  api:\n" in compose and "\n  worker:\n" in compose and "aliases: [worker]" in compose
