"""Verify the docker-compose deployment for real on this machine, step by step.

1. a Docker engine (installs docker.io + docker-compose from Debian and starts dockerd if needed)
2. a local Debian base image (debootstrap, then docker import): no registry is reachable here
3. stand-ins for the upstream redis and prometheus images, built from Debian's packages
4. the project's API and worker images, on that base (with the host's CA bundle for pip)
5. the stack up (Redis, API, two CPU workers, Prometheus; Grafana cannot be built here)
6. classify requests through the API: zero-shot and rlcf on the bundled models
7. Prometheus reports every target up and the project's metrics present
8. every Grafana dashboard panel queries metrics the running services export
9. SIGKILL of the worker running a job: the other replica completes it
10. a screenshot of Prometheus's graph of a project metric (headless Chromium) in docs/
and tears everything down. Prints each step's result and time, then the total.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "ttaverify"
BASE = "tta-base:bookworm"
API_PORT, PROM_PORT = 18000, 19090
API = f"http://127.0.0.1:{API_PORT}"
PROM = f"http://127.0.0.1:{PROM_PORT}"
COMPOSE = ["docker-compose", "-p", PROJECT, "-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml"]
ENV = {**os.environ, "BASE_IMAGE": BASE, "REDIS_IMAGE": "tta-redis:local",
       "PROMETHEUS_IMAGE": "tta-prometheus:local", "TTA_PORT": str(API_PORT),
       "PROMETHEUS_PORT": str(PROM_PORT), "TTA_LEASE_S": "10",
       "TTA_API_KEYS_HOST_FILE": str(ROOT / "docker/secrets/verify_keys.txt")}
PROJECT_METRICS = ["tta_http_requests_total", "tta_queue_depth", "tta_queue_oldest_age_seconds",
                   "tta_dead_letter_depth", "tta_workers_live", "tta_worker_up", "tta_jobs_total",
                   "tta_queue_wait_seconds_bucket", "tta_compute_seconds_bucket", "tta_batch_size_bucket",
                   "tta_label_changed_total", "tta_images_total", "tta_redeliveries_total",
                   "tta_dead_letters_total", "tta_adaptation_steps_total"]
FINISHED = ("done", "failed", "dead")
results: list[tuple[str, bool, float, str]] = []


def sh(*args: str, check: bool = True, quiet: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), cwd=ROOT, env=ENV, text=True, capture_output=quiet, **kwargs)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{(out.stderr or '')[-2000:]}")
    return out


def step(name: str, action: Callable[[], str]) -> None:
    start = time.perf_counter()
    try:
        detail, ok = action(), True
    except Exception as exc:  # report and stop: later steps depend on this one
        detail, ok = f"{type(exc).__name__}: {exc}", False
    took = time.perf_counter() - start
    results.append((name, ok, took, detail))
    print(f"[{'ok' if ok else 'FAIL'}] {name} ({took:.1f} s): {detail}", flush=True)
    if not ok:
        raise SystemExit(1)


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(1)
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s ({last})")


def engine() -> str:
    if sh("docker", "info", check=False).returncode == 0:
        return "engine already running"
    if not shutil.which("dockerd") or not shutil.which("docker-compose"):
        sh("apt-get", "install", "-y", "docker.io", "docker-compose")
    subprocess.Popen(["dockerd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    wait_for(lambda: sh("docker", "info", check=False).returncode == 0, 60, "dockerd")
    return "started dockerd"


def base_image() -> str:
    if sh("docker", "image", "inspect", BASE, check=False).returncode == 0:
        return f"{BASE} exists"
    if not shutil.which("debootstrap"):
        sh("apt-get", "install", "-y", "debootstrap")
    with tempfile.TemporaryDirectory() as root:
        sh("debootstrap", "--variant=minbase", "bookworm", root)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BASE], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return f"{BASE} made with debootstrap"


def standins() -> str:
    for name in ("redis", "prometheus"):
        sh("docker", "build", "-q", "-t", f"tta-{name}:local", "--build-arg", f"BASE_IMAGE={BASE}",
           "-f", f"docker/standins/Dockerfile.{name}", "docker/standins")
    return "tta-redis:local, tta-prometheus:local (Debian packages)"


def project_images() -> str:
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_ca.is_file():  # this machine's TLS-intercepting proxy CA, for pip inside the build
        shutil.copy(host_ca, ROOT / "docker/extra-ca/host-ca.crt")
    sh(*COMPOSE, "build", "api", "worker-cpu")
    sizes = {image: sh("docker", "image", "inspect", "-f", "{{.Size}}", image).stdout.strip()
             for image in ("tta-api:latest", "tta-worker:latest")}
    return ", ".join(f"{image} {int(size) / 1e9:.2f} GB" for image, size in sizes.items())


def up() -> str:
    keys = ROOT / "docker/secrets/verify_keys.txt"
    keys.unlink(missing_ok=True)
    key = sh(str(ROOT / ".venv/bin/tta"), "keys", "create", "verify", "--file", str(keys)).stdout.strip()
    keys.chmod(0o644)  # the API runs as uid 10001; the file holds only hashes
    ENV["TTA_VERIFY_KEY"] = key
    sh(*COMPOSE, "up", "-d", "--scale", "worker-cpu=2", "redis", "api", "worker-cpu", "prometheus")
    ready = wait_for(lambda: (r := httpx.get(f"{API}/readyz", timeout=5)).status_code == 200
                     and r.json()["workers"] == 2 and r.json(), 300, "readiness with 2 workers")
    return f"readyz {ready}"


def client() -> httpx.Client:
    auth = {"Authorization": f"Bearer {ENV['TTA_VERIFY_KEY']}"}
    return httpx.Client(base_url=API, timeout=120, headers=auth)


def scene(domain: str, label: int, seed: int) -> bytes:
    from world.render import render

    buffer = io.BytesIO()
    render(domain, label, seed, 64).image.save(buffer, format="PNG")
    return buffer.getvalue()


def classify() -> str:
    from world.glyphs import CLASS_NAMES

    out = []
    with client() as http:
        assert http.get("/v1/methods", headers={"Authorization": "Bearer wrong"}).status_code == 401
        for method in ("zeroshot", "rlcf"):
            response = http.post("/v1/classify", files=[("image", ("s.png", scene("v2", 3, 1_000_000)))],
                                 data={"labels": list(CLASS_NAMES), "method": method})
            response.raise_for_status()
            result = response.json()["results"][0]
            out.append(f"{method}: {result['label']} ({result['metrics']['compute_ms']:.0f} ms, "
                       f"truth {CLASS_NAMES[3]})")
    return "; ".join(out)


def prometheus_targets() -> str:
    def all_up() -> list[dict[str, Any]] | None:
        targets = httpx.get(f"{PROM}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        jobs = [t["labels"]["job"] for t in targets]
        healthy = all(t["health"] == "up" for t in targets)
        return targets if healthy and jobs.count("tta-api") == 1 and jobs.count("tta-worker") == 2 else None

    targets = wait_for(all_up, 90, "every target up")
    names = set(httpx.get(f"{PROM}/api/v1/label/__name__/values", timeout=5).json()["data"])
    missing = [m for m in PROJECT_METRICS if m not in names]
    if missing:
        raise AssertionError(f"metrics missing in Prometheus: {missing}")
    ENV["TTA_EXPORTED"] = json.dumps(sorted(names))
    urls = ", ".join(t["scrapeUrl"] for t in targets)
    return f"{len(targets)} targets up ({urls}); {len(PROJECT_METRICS)} project metrics present"


def dashboard() -> str:
    names = set(json.loads(ENV["TTA_EXPORTED"]))
    panels = json.loads((ROOT / "docker/grafana/dashboards/tta.json").read_text())["panels"]
    used: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            used |= set(re.findall(r"\btta_[a-z_]+", target["expr"]))
    unknown = sorted(used - names)
    if unknown:
        raise AssertionError(f"dashboard queries metrics nobody exports: {unknown}")
    return f"{len(panels)} panels, {len(used)} metrics, all exported"


def kill_worker_mid_job() -> str:
    from service.client import parse_sse
    from world.glyphs import CLASS_NAMES

    files = [("image", (f"{i}.png", scene("sketch", i, 1_000_000 + i))) for i in range(4)]
    data = {"labels": list(CLASS_NAMES), "method": "rlcf-tune",
            "options": json.dumps({"params": "all", "steps": 24})}
    with client() as http:
        job_id = http.post("/v1/jobs", files=files, data=data).json()["job_id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            started = next(e for e in parse_sse(stream.iter_lines()) if e.event == "started")
        victim_host = started.data["worker"].rsplit("-", 1)[0]
        containers = sh("docker", "ps", "-q", "--filter", f"name={PROJECT}_worker-cpu").stdout.split()
        victim = next(c for c in containers if victim_host.startswith(c[:12]))
        sh("docker", "kill", "-s", "KILL", victim)
        job = wait_for(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in FINISHED and j,
                       240, "the job after the kill")
    workers = {r["metrics"]["worker"] for r in job["results"] if r}
    if job["status"] != "done" or job["attempts"] < 2:
        raise AssertionError(f"job ended {job['status']} after {job['attempts']} attempts: "
                             f"{job.get('error')}")
    return (f"killed {victim[:12]} ({started.data['worker']}) mid-job; job done after {job['attempts']} "
            f"attempts, results from {sorted(workers)}")


def screenshot() -> str:
    expr = "sum by (route, status) (tta_http_requests_total)"
    url = f"{PROM}/graph?" + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": "2m"})
    target = ROOT / "docs/images/prometheus.png"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sh("apt-get", "install", "-y", "chromium")
        chromium = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as profile:
        sh(str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=15000",
           f"--screenshot={target}", url)
    return f"{target.relative_to(ROOT)} ({target.stat().st_size // 1024} kB) of {expr}"


def teardown() -> str:
    sh(*COMPOSE, "down", "-v", "--remove-orphans", check=False)
    (ROOT / "docker/secrets/verify_keys.txt").unlink(missing_ok=True)
    return "stack removed"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    try:
        step("docker engine", engine)
        step("local Debian base image", base_image)
        step("stand-in redis and prometheus images", standins)
        step("project images (api, worker)", project_images)
        step("stack up and ready", up)
        step("classify through the API", classify)
        step("prometheus targets and metrics", prometheus_targets)
        step("grafana dashboard queries", dashboard)
        step("SIGKILL a worker mid-job", kill_worker_mid_job)
        step("prometheus screenshot", screenshot)
    except SystemExit:
        sh(*COMPOSE, "logs", "--tail", "30", check=False, quiet=False)
    finally:
        step_start = time.perf_counter()
        detail = teardown()
        print(f"[ok] teardown ({time.perf_counter() - step_start:.1f} s): {detail}")
    total = time.perf_counter() - started
    failed = [name for name, ok, _, _ in results if not ok]
    print(f"\n{len(results) - len(failed)}/{len(results)} steps passed in {total:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
