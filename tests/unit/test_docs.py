"""The docs say what the code does: generated tables match the code and the benchmarks' JSON,
and every setting, metric, alert and benchmark the prose names exists."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def docs_tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts/docs_tables.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(page: Path) -> str:
    """A page without its generated blocks."""
    return re.sub(r"<!-- begin: .*? -->.*?<!-- end: .*? -->", "", page.read_text(), flags=re.S)


def test_generated_tables_match_the_code_and_the_benchmark_json():
    assert docs_tables().stale_blocks() == []


def test_every_page_has_its_generated_tables():
    text = {page.name: page.read_text() for page in PAGES}
    for name in ("keys", "fields", "scripts"):
        assert f"<!-- begin: {name} -->" in text["architecture.md"]
    for name in ("settings", "metrics"):
        assert f"<!-- begin: {name} -->" in text["operations.md"]
    for path in sorted((DOCS / "benchmarks").glob("*.json")):
        assert f"<!-- begin: bench {path.stem} -->" in text["benchmarks.md"], path.name


def test_a_table_follows_its_json():
    tables = docs_tables()
    record = json.loads((DOCS / "benchmarks/episodes.json").read_text())
    block = tables.bench_block("episodes")
    for run in record["runs"]:
        assert run["command"] in block
        for row in run["result"]["rows"]:
            assert f"{row['images_per_s']:.2f}" in block


def test_benchmark_files_are_one_per_benchmark_with_their_provenance():
    for path in sorted((DOCS / "benchmarks").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["benchmark"] == path.stem
        assert record["runs"], path.name
        for run in record["runs"]:
            assert {"title", "command", "machine", "date", "result"} <= set(run), path.name
            assert run["command"].startswith(("tta bench", "OMP_NUM_THREADS")), run["command"]
    assert not list(DOCS.glob("*.json")), "benchmark data belongs in docs/benchmarks/"


def test_every_setting_the_docs_name_exists():
    known = {f"TTA_{name.upper()}" for name in Settings.model_fields}
    # (read by tta serve and the tests, not settings of a process)
    known |= {"TTA_API_KEY", "TTA_PLAYGROUND_SCREENSHOTS"}
    for page in PAGES:
        named = set(re.findall(r"\bTTA_[A-Z_]+[A-Z]", prose(page)))
        assert named <= known, f"{page.name} names unknown settings: {sorted(named - known)}"


def test_every_metric_the_docs_name_is_exported_and_each_has_a_runbook_line():
    exported = {name for _, name, _, _, _ in docs_tables().metrics()}
    for page in PAGES:
        named = set(re.findall(r"\btta_[a-z_]+[a-z]", prose(page)))
        named = {re.sub(r"_(bucket|count|sum)$", "", name) for name in named}
        assert named <= exported, f"{page.name} names unknown metrics: {sorted(named - exported)}"
    operations = prose(DOCS / "operations.md")
    missing = sorted(name for name in exported if name not in operations)
    assert not missing, f"metrics with no word on what to do when they move: {missing}"
