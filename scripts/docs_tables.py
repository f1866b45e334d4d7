"""The generated parts of the docs: tables read from the code and the benchmarks' JSON.

    python scripts/docs_tables.py            rewrite every generated block (README.md, docs/*.md)
    python scripts/docs_tables.py --check    exit 1, naming each block that differs
    python scripts/docs_tables.py record BENCH RESULT.json --title T --command C --machine M
                                             put one run into docs/benchmarks/BENCH.json

In README.md and docs/*.md, a generated block sits between ``<!-- begin: NAME -->`` and
``<!-- end: NAME -->``; NAME is ``settings``, ``metrics``, ``keys``, ``fields``, ``scripts``,
``readme peers`` or ``bench BENCH``. The tables come from the code's own docstrings (settings,
Redis keys, fields, scripts), the Prometheus collectors and docs/benchmarks/*.json, so the docs
say what the code does (tests/unit/test_docs.py checks them).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import inspect
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = ROOT / "docs"
BENCHMARKS = DOCS / "benchmarks"
BLOCK = re.compile(r"(<!-- begin: (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])


def _attribute_docs(tree: ast.AST) -> Iterator[tuple[str, str, int]]:
    """(name, docstring, line) of every assignment followed by a string, in source order."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for first, second in itertools.pairwise(body):
            target = (first.target if isinstance(first, ast.AnnAssign) else
                      first.targets[0] if isinstance(first, ast.Assign) else None)
            if (isinstance(target, ast.Name) and isinstance(second, ast.Expr)
                    and isinstance(second.value, ast.Constant) and isinstance(second.value.value, str)):
                yield target.id, inspect.cleandoc(second.value.value), first.lineno


# Settings -------------------------------------------------------------------------------------

def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        return "`" + str(value).replace(str(Path.home()), "~") + "`"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024 * 1024 \
            and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)} MiB"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 86_400 and value % 86_400 == 0:
        return f"{value} ({value // 86_400} days)"
    return f"`{value}`"


def settings_table() -> str:
    from service.settings import Settings

    path = ROOT / "service" / "settings.py"
    source = path.read_text()
    docs = {name: doc for name, doc, _ in _attribute_docs(ast.parse(source))}
    missing = [name for name in Settings.model_fields if name not in docs]
    if missing:
        raise SystemExit(f"settings without a docstring in service/settings.py: {missing}")
    # The comment lines that head each group of settings ("# Models (worker)").
    groups: list[tuple[str, list[list[str]]]] = []
    fields = iter(Settings.model_fields.items())
    current: tuple[str, Any] | None = next(fields, None)
    for line in source.splitlines():
        stripped = line.strip()
        if line.startswith("    # "):
            groups.append((stripped[2:], []))
        elif current is not None and stripped.startswith(current[0] + ":") and groups:
            name, field = current
            groups[-1][1].append([f"`TTA_{name.upper()}`", _default(field.default), docs[name]])
            current = next(fields, None)
    parts = []
    for title, rows in groups:
        parts += [f"**{title}**", "", _table(["variable", "default", "what it sets"], rows), ""]
    return "\n".join(parts).rstrip()


# Metrics --------------------------------------------------------------------------------------

def metrics() -> list[tuple[str, str, str, list[str], str]]:
    """(exported by, name, type, labels, help) of every collector."""
    from prometheus_client.metrics import MetricWrapperBase

    import service.api.metrics as api_metrics
    import service.worker.metrics as worker_metrics

    found = []
    for where, module in (("API", api_metrics), ("worker", worker_metrics)):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                suffix = "_total" if value._type == "counter" else ""
                found.append((where, value._name + suffix, value._type, list(value._labelnames),
                              value._documentation))
    return found


def metrics_table() -> str:
    return _table(["metric", "type", "labels", "from", "meaning"],
                  [[f"`{name}`", kind, ", ".join(labels) or "", where, text]
                   for where, name, kind, labels, text in metrics()])


# The queue contract ---------------------------------------------------------------------------

PLACEHOLDERS = {"route": "{route}", "owner": "{owner}", "name": "{name}", "job_id": "{job_id}",
                "group": "{group}", "version": "{version}", "scope": "{owner}|{label set}"}


def _role(doc: str, label: str) -> str:
    match = re.search(rf"^{label}: (.*?)\.?$", doc, re.M)
    return match.group(1) if match else ""


def _what(doc: str) -> str:
    return " ".join(line for line in doc.splitlines()
                    if not line.startswith(("Writer:", "Reader:", "Caller:")))


def keys_table() -> str:
    from service.queue.keys import Keys, TrainingKeys

    keys = Keys("tta")
    rows = []

    def add(owner: Any, name: str, member: Any) -> None:
        function = member.fget if isinstance(member, property) else member
        doc = inspect.getdoc(function) or ""
        if "Reader:" not in doc:  # helpers (patterns, key lists), not keys
            return
        if isinstance(member, property):
            key = getattr(owner, name)
        else:
            params = list(inspect.signature(function).parameters)[1:]
            key = getattr(owner, name)(*(PLACEHOLDERS[p] for p in params))
        rows.append([f"`{key}`", _what(doc), _role(doc, "Writer"), _role(doc, "Reader")])

    for cls, owner in ((Keys, keys), (TrainingKeys, keys.training("{owner}", "{name}"))):
        for name, member in vars(cls).items():
            if not name.startswith("_") and (isinstance(member, property) or inspect.isfunction(member)):
                add(owner, name, member)
    return _table(["key", "what it holds", "written by", "read by"], rows)


def fields_table() -> str:
    from service.queue import fields

    tree = ast.parse((ROOT / "service" / "queue" / "fields.py").read_text())
    docs = {}
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for name, doc, _ in _attribute_docs(cls):
            docs[(cls.name, name)] = doc
    rows = []
    for cls in (fields.JobField, fields.EntryField, fields.EventField):
        for name, value in vars(cls).items():
            if name.isupper():
                if (cls.__name__, name) not in docs:
                    raise SystemExit(f"{cls.__name__}.{name} has no docstring (service/queue/fields.py)")
                rows.append([inspect.getdoc(cls).split("(")[0].strip() if inspect.getdoc(cls) else "",
                             f"`{value}`", docs[(cls.__name__, name)]])
    return _table(["in", "field", "meaning"], rows)


def scripts_table() -> str:
    from service.queue import scripts

    tree = ast.parse((ROOT / "service" / "queue" / "scripts.py").read_text())
    rows = []
    for name, doc, _ in _attribute_docs(tree):
        source = getattr(scripts, name, None)
        if not (isinstance(source, str) and name.isupper() and "redis.call" in source):
            continue
        keys = re.search(r"-- KEYS: ([^\n.]*)", source)
        rows.append([f"`{name}`", keys.group(1).strip() if keys else "(a Lua function)", _what(doc),
                     _role(doc, "Caller")])
    return _table(["script", "keys", "what it does, atomically", "called by"], rows)


# Benchmarks -----------------------------------------------------------------------------------

def bench_block(name: str) -> str:
    from bench.tables import TABLES, markdown

    record = json.loads((BENCHMARKS / f"{name}.json").read_text())
    parts = []
    for run in record["runs"]:
        parts += [f"**{run['title']}** ({run['machine']}, {run['date']}; "
                  f"[JSON](benchmarks/{name}.json))", "", "```bash", run["command"], "```", ""]
        for table in TABLES[name]:
            headers, rows = table(run["result"])
            if rows:  # (a table a run has nothing for: auto's tiers in a run without auto)
                parts += [markdown((headers, rows)), ""]
    return "\n".join(parts).rstrip()


def readme_peers() -> str:
    """The first peers run as a service-vs-LitServe table, and the ratios of the runs after it."""
    from bench.tables import markdown, peers_summary

    first, *more = json.loads((BENCHMARKS / "peers.json").read_text())["runs"]
    parts = [markdown(peers_summary(first["result"])), "", f"({first['machine']}, {first['date']}.)"]
    if more:
        ratios: dict[tuple[str, int], list[str]] = {}
        for run in more:
            for line in peers_summary(run["result"])[1]:
                ratios.setdefault((line[0], int(line[1])), []).append(line[5])
        said = "; ".join(f"{method} at {clients} clients {', '.join(values)}"
                         for (method, clients), values in ratios.items())
        parts += ["", f"In {len(more)} more runs the same day, alternating which server ran first, "
                  f"service / LitServe: {said}."]
    return "\n".join(parts)


def record_run(args: argparse.Namespace) -> None:
    path = BENCHMARKS / f"{args.bench}.json"
    record = json.loads(path.read_text()) if path.exists() else {"benchmark": args.bench, "runs": []}
    run = {"title": args.title, "command": args.command, "machine": args.machine,
           "date": args.date or datetime.date.today().isoformat(),
           "result": json.loads(Path(args.result).read_text())}
    runs = [r for r in record["runs"] if r["title"] != args.title]
    at = next((i for i, r in enumerate(record["runs"]) if r["title"] == args.title), len(runs))
    runs.insert(at, run)
    record["runs"] = runs
    path.write_text(json.dumps(record, indent=1) + "\n")


# The pages ------------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_table, "metrics": metrics_table, "keys": keys_table,
    "fields": fields_table, "scripts": scripts_table, "readme peers": readme_peers,
}


def generate(name: str) -> str:
    if name.startswith("bench "):
        return bench_block(name.split(" ", 1)[1])
    return GENERATORS[name]()


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: f"{m.group(1)}{generate(m.group('name'))}\n{m.group(4)}", text)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def stale_blocks() -> list[str]:
    """Every generated block whose text differs from what the code and JSON give."""
    stale = []
    for page in pages():
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if match.group("body") != generate(match.group("name")) + "\n":
                stale.append(f"{page.relative_to(ROOT)}: {match.group('name')}")
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report blocks that differ")
    sub = parser.add_subparsers(dest="action")
    record = sub.add_parser("record", help="put one benchmark run into docs/benchmarks/BENCH.json")
    record.add_argument("bench")
    record.add_argument("result", help="the JSON the bench wrote")
    record.add_argument("--title", required=True, help="replaces the run of the same title")
    record.add_argument("--command", required=True)
    record.add_argument("--machine", required=True)
    record.add_argument("--date", help="default: today")
    args = parser.parse_args()
    if args.action == "record":
        record_run(args)
    if args.check:
        stale = stale_blocks()
        for block in stale:
            print(f"out of date: {block} (run python scripts/docs_tables.py)")
        return 1 if stale else 0
    for page in pages():
        text = page.read_text()
        if (new := regenerate(text)) != text:
            page.write_text(new)
            print(f"updated {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
