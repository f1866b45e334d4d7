"""Schemathesis (a maintained OpenAPI fuzzer) against a live ``tta serve``: 40 seconds of
generated requests for every operation must give no server error and no response the spec does
not declare (status, content type, headers, body schema, Allow on 405).

``positive_data_acceptance`` is left out on purpose: the schema cannot say "a decodable image"
or "options this method accepts", so schema-valid requests are rightly refused with a 4xx."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from service.redis_server import free_port
from tests.integration.conftest import ROOT, TINY_MODELS, wait_until

FUZZ_SECONDS = int(os.environ.get("TTA_FUZZ_SECONDS", "40"))
"""The fuzzer's budget: with start-up, the test stays under a minute (the README's test command
prints a dot per test, and none should be silent much longer)."""


def test_schemathesis_finds_no_server_error_or_spec_violation(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **TINY_MODELS, "TTA_DATA_DIR": str(tmp_path / "data"),
           "TTA_WORKER_METRICS_PORT": "0", "TTA_HEARTBEAT_S": "0.5"}
    env.pop("TTA_REDIS_URL", None)
    env.pop("TTA_API_KEYS_FILE", None)
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed below)
    serve = subprocess.Popen([sys.executable, "-m", "service.cli.main", "serve", "--port", str(port)],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 180, "tta serve to be ready")
        binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        # One worker thread: with two, schemathesis's coverage phase crashed now and then inside
        # CPython 3.11.7's ast.parse (hypothesis describing a lambda), "SystemError: AST
        # constructor recursion depth mismatch" (python/cpython#106905, seen in threaded
        # programs, fixed in 3.11.8): two runs of three in one fresh clone, a tool crash, not a
        # finding about the service.
        result = subprocess.run(
            [binary, "run", f"{url}/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "--max-time", str(FUZZ_SECONDS),
             "--workers", "1", "--phases", "examples,coverage,fuzzing", "--seed", "20261129"],
            capture_output=True, text=True, timeout=FUZZ_SECONDS + 240, cwd=tmp_path)
        report = result.stdout[-6000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert "Server error" not in result.stdout, report
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        log.close()
