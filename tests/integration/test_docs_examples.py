"""Every code block the README and docs mark ``<!-- runnable -->`` runs against a live
``tta serve`` on the bundled models (the world CLIPs and the world MLLM), as a reader would run
it: from a folder holding ``out/demo.png``, with the address swapped for the test's port. A
block passes when it exits 0 and no answer in its output is an API error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from service.redis_server import free_port
from tests.integration.conftest import ROOT, tta_serve

RUNNABLE = re.compile(r"<!-- runnable -->\n```(?P<lang>bash|python)\n(?P<code>.*?)```", re.S)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ERROR_BODY = re.compile(r'"code":\s*"[a-z_]+",\s*"message"')


def runnable_blocks() -> list[tuple[str, str, str]]:
    """(where, language, code) of every block marked runnable."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in RUNNABLE.finditer(text):
            line = text[:match.start()].count("\n") + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line}", match["lang"], match["code"]))
    return blocks


def test_the_docs_mark_examples_runnable():
    blocks = runnable_blocks()
    where = {b[0].split(":")[0] for b in blocks}
    assert {"README.md", "docs/api.md"} <= where, where
    assert len(blocks) >= 6
    assert any(lang == "python" for _, lang, _ in blocks)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``tta serve`` as ``scripts/run.sh`` starts it, and a reader's folder with the demo scene."""
    home = tmp_path_factory.mktemp("reader")
    (home / "out").mkdir()
    shutil.copy(ROOT / "service/api/static/samples/demo.png", home / "out/demo.png")
    port = free_port()
    env = {**os.environ, "TTA_DATA_DIR": str(home / "data"), "TTA_MLLM": "world-mllm",
           "TTA_WORKER_METRICS_PORT": "0", "TTA_HEARTBEAT_S": "0.5"}
    for name in ("TTA_REDIS_URL", "TTA_MODEL", "TTA_REWARD_MODEL", "TTA_API_KEYS_FILE"):
        env.pop(name, None)
    with tta_serve(port, env, home / "serve.log"):
        yield home, port, env


BLOCKS = runnable_blocks()


@pytest.mark.parametrize(("where", "lang", "code"), BLOCKS, ids=[where for where, _, _ in BLOCKS])
def test_a_runnable_example_runs(served, where, lang, code):
    home, port, env = served
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    env = {**env, "PYTHONPATH": str(ROOT)}
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{where} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert done.stdout.strip(), f"{where} printed nothing"
    assert not ERROR_BODY.search(done.stdout), f"{where} got an API error:\n{done.stdout[-2000:]}"
