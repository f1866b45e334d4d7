"""Real processes for the service tests: a redis-server on a free port, the API under uvicorn and
workers (``tta api`` / ``tta worker`` subprocesses) on tiny random-weight models."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.api.auth import append_key
from service.redis_server import PrivateRedis, free_port
from tests.conftest import make_image

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["red ball", "blue car", "green tree", "yellow kettle", "black cat"]
TINY_MODELS = {"TTA_MODEL": "tta-tiny:random", "TTA_REWARD_MODEL": "tta-tiny-reward:random",
               "TTA_DEVICE": "cpu"}


def png_bytes(seed: int = 0, size: tuple[int, int] = (96, 72)) -> bytes:
    buffer = io.BytesIO()
    make_image(seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@contextmanager
def tta_serve(port: int, env: dict[str, str], log_path: Path, timeout_s: float = 120) -> Iterator[str]:
    """``tta serve`` on ``port`` (its output in ``log_path``) until the block ends; yields its
    URL once ``/readyz`` answers 200."""
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    serve = subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve", "--port", str(port)],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert serve.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout_s, "tta serve to be ready")
        yield url
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        log.close()


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class Service:
    """An API and its workers, sharing one Redis under a private key prefix."""

    env: dict[str, str]
    api_port: int
    keys: dict[str, str] = field(default_factory=dict)
    api: subprocess.Popen | None = None  # type: ignore[type-arg]
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)  # type: ignore[type-arg]
    logs: Path = Path("/tmp")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, tenant: str | None = "alice", timeout_s: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _spawn(self, args: list[str], name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen([sys.executable, "-m", "service.cli.main", "-v", *args], cwd=ROOT,
                                env={**self.env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT)

    def start_api(self, **extra_env: str) -> None:
        self.api = self._spawn(["api", "--port", str(self.api_port)], f"api-{self.api_port}", extra_env)
        wait_until(self._api_up, 30, "the API to answer /healthz")

    def _api_up(self) -> bool:
        assert self.api is not None and self.api.poll() is None, "API process exited"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, name: str, **extra_env: str) -> subprocess.Popen:  # type: ignore[type-arg]
        process = self._spawn(["worker"], f"worker-{name}",
                              {"TTA_WORKER_ID": name, "TTA_WORKER_METRICS_PORT": "0", **extra_env})
        self.workers[name] = process
        return process

    def live_workers(self) -> set[str]:
        response = httpx.get(f"{self.url}/v1/models", timeout=2,
                             headers={"Authorization": f"Bearer {self.keys['alice']}"})
        return {w["id"] for w in response.json()["workers"]}

    def wait_workers(self, names: set[str], timeout_s: float = 180) -> None:
        wait_until(lambda: names <= self.live_workers(), timeout_s, f"workers {names} to be live")

    def stop(self) -> None:
        for process in [*self.workers.values(), *([self.api] if self.api else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.workers.values(), *([self.api] if self.api else [])]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), persist=False).start()
    yield server
    server.stop()


def make_service(redis_url: str, tmp: Path, **settings: str) -> Service:
    keys_file = tmp / "keys.txt"
    keys = {tenant: append_key(keys_file, tenant) for tenant in ("alice", "bob")}
    env = {**os.environ, **TINY_MODELS, "TTA_REDIS_URL": redis_url,
           "TTA_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}", "TTA_API_KEYS_FILE": str(keys_file),
           "TTA_LEASE_S": "2", "TTA_HEARTBEAT_S": "0.5", "PYTHONUNBUFFERED": "1", **settings}
    return Service(env=env, api_port=free_port(), keys=keys, logs=tmp)


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str, dict]]:  # type: ignore[type-arg]
    """(id, event, data) from a streaming httpx response, until the job's last event."""
    from service.client import parse_sse

    for event in parse_sse(response.iter_lines()):
        yield event.id, event.event, event.data
        if event.is_terminal:
            return
