"""The benchmarks' tables, one definition each: a result (what ``tta bench <name>`` writes as
JSON) in, headers and rows out. The bench prints it (``service.cli.common.print_table``) and
``scripts/docs_tables.py`` puts it in docs/benchmarks.md from docs/benchmarks/<name>.json
(``markdown``), so the console and the docs show the same table; a test fails when the page and
its JSON disagree.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from world.render import SHIFTED_DOMAINS, TEST_DOMAINS

Table = tuple[list[str], list[list[str]]]


def markdown(table: Table) -> str:
    headers, rows = table
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def accuracy(result: dict[str, Any]) -> Table:
    """Top-1 accuracy per method and domain, the shifted domains' mean, the mean ECE, the
    median ms per image and (runs that recorded it) the mean (``tta bench accuracy``)."""
    rows = result["results"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    domains = [d for d in TEST_DOMAINS if any(r["domain"] == d for r in rows)]
    by_key = {(r["method"], r["domain"]): r for r in rows}
    has_mean = any(r.get("ms_mean") is not None for r in rows)
    headers = ["method", *domains, "shifted avg", "ECE avg", "ms / image",
               *(["mean ms / image"] if has_mean else [])]
    lines = []
    for method in methods:
        mine = [by_key[(method, d)] for d in domains]
        shifted = shifted_average(rows, method)
        lines.append([method, *(_pct(r["accuracy"]) for r in mine),
                      "" if shifted is None else _pct(shifted),
                      f"{statistics.mean(r['ece'] for r in mine):.3f}",
                      f"{statistics.median(r['ms_per_image'] for r in mine):.1f}",
                      *([f"{mean_ms(rows, method):.1f}"] if has_mean else [])])
    return headers, lines


def shifted_average(rows: list[dict[str, Any]], method: str) -> float | None:
    """A method's mean top-1 over the shifted domains (None: it ran on none)."""
    shifted = [r["accuracy"] for r in rows if r["method"] == method and r["domain"] in SHIFTED_DOMAINS]
    return statistics.mean(shifted) if shifted else None


def mean_ms(rows: list[dict[str, Any]], method: str) -> float:
    """A method's mean ms per image over all its domains (equal images per domain)."""
    return statistics.mean(r.get("ms_mean") or r["ms_per_image"] for r in rows if r["method"] == method)


def auto_tiers(result: dict[str, Any]) -> Table:
    """Which tier answered ``auto``'s images, per variant: the share of clean images and of the
    shifted domains' images (pooled) each tier answered."""
    from contract.method_options import AutoOptions

    rows = [r for r in result["results"] if r.get("answered_by")]
    seen = {t for r in rows for t in r["answered_by"]}
    ladder = ["zeroshot", *(t.strip() for t in AutoOptions.tiers.split(","))]
    tiers = [t for t in ladder if t in seen] + sorted(seen - set(ladder))
    headers = ["variant", *(f"clean: {t}" for t in tiers), *(f"shifted: {t}" for t in tiers)]
    lines = []
    for variant in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == variant]
        clean = [r["answered_by"] for r in mine if r["domain"] == "clean"]
        shifted = [r["answered_by"] for r in mine if r["domain"] in SHIFTED_DOMAINS]
        lines.append([variant, *_shares(clean, tiers), *_shares(shifted, tiers)])
    return headers, lines


def _shares(counts: list[dict[str, int]], tiers: list[str]) -> list[str]:
    total = sum(sum(c.values()) for c in counts)
    return [_pct(sum(c.get(t, 0) for c in counts) / total) if total else "" for t in tiers]


def drift(result: dict[str, Any]) -> Table:
    """The drift score on a stable stream and after a switch of domain (``tta bench drift``)."""
    clean = result["clean"]
    headers = ["stream", "requests", "scored", "alarms", "max score", "requests to alarm after the switch"]
    lines = [["clean", str(clean["requests"]), str(clean["scored"]), str(clean["alarms"]),
              f"{clean['max_score']:.1f}", ""]]
    for domain, switch in result["switches"].items():
        crossed = switch["requests_after_switch"]
        lines.append([f"clean -> {domain}", "", "", str(switch["alarms_before_switch"]),
                      f"{switch['max_score_after']:.1f}", "never" if crossed is None else str(crossed)])
    return headers, lines


def mllm(result: dict[str, Any]) -> Table:
    """What the MLLM did, per variant and domain (``tta bench accuracy`` with mllm variants)."""
    headers = ["variant", "domain", "top-1", "zero-shot", "calls / image", "gate kept", "changed",
               "changed right", "changed wrong", "broke right"]
    lines = [[s["method"], s["domain"], _pct(s["accuracy"]), _pct(s["zeroshot_accuracy"]),
              f"{s['calls_per_image']:.2f}", _pct(s["gate_kept"]), _pct(s["changed"]),
              str(s["changed_right"]), str(s["changed_wrong"]), str(s["broke"])]
             for s in result.get("mllm", {}).get("stats", [])]  # (none in a run without mllm)
    return headers, lines


def finetune(result: dict[str, Any]) -> Table:
    """Zero-shot accuracy of fine-tuned versions against the original (``tta bench finetune``)."""
    return finetune_rows([*result["curve"], *result["variants"]], result["zeroshot_before"]["accuracy"])


def finetune_rows(rows: list[dict[str, Any]], base: dict[str, float]) -> Table:
    """``finetune`` for some of its rows, against the original's accuracy per domain."""
    from contract.finetune_params import FinetuneParams

    defaults = FinetuneParams().to_dict()
    headers = ["N", "hyperparameters (not default)", *TEST_DOMAINS, "shifted avg", "gain", "clean delta",
               "s / 100 images"]
    lines = [["0", "(original model)", *(_pct(base[d]) for d in TEST_DOMAINS),
              _pct(statistics.mean(base[d] for d in SHIFTED_DOMAINS)), "", "", ""]]
    for row in rows:
        changed = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row["hyperparameters"].items() if defaults.get(k) != v)
        lines.append([str(row["n"]), changed or "defaults",
                      *(_pct(row["accuracy"][d]) for d in TEST_DOMAINS), _pct(row["shifted_mean"]),
                      f"{row['gain_shifted_points']:+.1f}", f"{row['clean_delta_points']:+.1f}",
                      f"{row['finetune_s_per_100_images']:.2f}"])
    return headers, lines


def peers(result: dict[str, Any]) -> Table:
    """The service against a plain endpoint and LitServe (``tta bench peers``)."""
    headers = ["server", "method", "clients", "images/s", "p50 / p99 ms", "images/s vs service",
               "server CPU ms / request"]
    lines = []
    for row in result["rows"]:
        lines.append([row["server"], row["method"], str(row["concurrency"]),
                      f"{row['throughput_per_s']:.1f}", f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f}",
                      f"{row['throughput_vs_service']:.2f}",
                      f"{row['server_cpu_ms_per_request']:.2f}"
                      if "server_cpu_ms_per_request" in row else ""])
    return headers, lines


def peers_summary(result: dict[str, Any]) -> Table:
    """The service against LitServe, one line per method and load (for the README)."""
    by_key = {(r["server"], r["method"], r["concurrency"]): r for r in result["rows"]}
    service = [r for r in result["rows"] if r["server"].startswith("service")]
    litserve = next((r["server"] for r in result["rows"] if r["server"].lower().startswith("litserve")), None)
    lines = []
    for row in service:
        peer = by_key.get((litserve, row["method"], row["concurrency"])) if litserve else None
        lines.append([row["method"], str(row["concurrency"]), f"{row['throughput_per_s']:.0f}",
                      f"{row['p50_ms']:.1f}",
                      f"{peer['throughput_per_s']:.0f}" if peer else "",
                      f"{row['throughput_per_s'] / peer['throughput_per_s']:.2f}x" if peer else ""])
    return (["method", "clients", "service images/s", "service p50 ms", "LitServe images/s",
             "service / LitServe"], lines)


def latency(result: dict[str, Any]) -> Table:
    """Median compute per image and method, in-process (``tta bench latency``)."""
    return ["method", "median ms / image"], [[r["method"], f"{r['median_ms']:.1f}"]
                                             for r in result["methods"]]


def episodes(result: dict[str, Any]) -> Table:
    """Images per second by episode-set size (``tta bench episodes``; s per set is the median,
    images/s from the mean set time in runs recorded since auto, from the median before)."""
    first = result["rows"][0]["B"]
    return (["B (images per set)", "sets", "s per set", "images/s", f"vs B = {first}"],
            [[str(r["B"]), str(r["sets"]), f"{r['s_per_set']:.3f}", f"{r['images_per_s']:.2f}",
              f"{r['vs_B1']:.2f}x"] for r in result["rows"]])


def reference(result: dict[str, Any]) -> Table:
    """The service's ``rlcf`` against the published procedure (``tta bench reference``)."""
    headers = ["classes", "precision", "device", "published procedure s / image",
               "service s / image", "speed-up", "peak memory MB (published / service)",
               "answers differ by"]
    lines = [[str(r["classes"]), r["precision"], r["device"], f"{r['reference_s']:.3f}",
              f"{r['service_s']:.3f}", f"{r['speedup']:.2f}x",
              f"{r['reference_peak_mb']:.0f} / {r['service_peak_mb']:.0f}",
              f"{r['max_prob_difference']:.0e}"] for r in result["rows"]]
    return headers, lines


def hostile(result: dict[str, Any]) -> Table:
    """A well-behaved client's zero-shot latency while another tenant attacks (``tta bench hostile``)."""
    return (["phase", "requests", "p50 ms", "p99 ms"],
            [[phase.replace("_", " "), str(row["n"]), f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}"]
             for phase, row in result["neighbour"].items()])


def hostile_attacks(result: dict[str, Any]) -> Table:
    """What each attack got, and what the processes' memory did."""
    big, largest = result["big_images"], result["largest_label_set"]
    lines = [["requests of 16 JPEGs of 6000 x 6000", f"{sorted(set(big['statuses']))}",
              f"median {big['median_ms']:.0f} ms"],
             [f"label set of {largest['exemplars']} exemplars in {largest['classes']} classes",
              str(largest["status"]), f"{largest['api_ms']:.0f} ms of API time"],
             ["mllm on it, 20 candidates x 10 draws", f"{sorted(set(largest['mllm_statuses']))}", ""]]
    for name in ("worker", "api"):
        before, after = result["memory_before"][name], result["memory_after"][name]
        lines.append([f"{name} memory", "", f"RSS {before['rss_mb']:.0f} -> {after['rss_mb']:.0f} MB, "
                      f"peak {after['peak_mb']:.0f} MB"])
    return ["attack", "answers", "cost"], lines


def failover(result: dict[str, Any]) -> Table:
    """A Redis master SIGKILLed under load, run by run (``tta bench failover``)."""
    return (["run", "accepted", "done", "failed", "lost", "refused (statuses)", "error window s",
             "promoted after s", "all ended after kill s"],
            [[str(i + 1), str(r["accepted"]), str(r["done"]), str(r["failed"]), str(r["lost"]),
              f"{r['refused']} {r['refused_statuses']}", f"{r['error_window_s']:.1f}",
              f"{r['promoted_after_s']:.1f}", f"{r['all_ended_after_kill_s']:.1f}"]
             for i, r in enumerate(result["runs"])])


TABLES: dict[str, list[Callable[[dict[str, Any]], Table]]] = {
    "accuracy": [accuracy, auto_tiers], "mllm": [accuracy, mllm], "drift": [drift], "failover": [failover],
    "finetune": [finetune], "peers": [peers], "latency": [latency], "episodes": [episodes],
    "reference": [reference],
    "hostile": [hostile, hostile_attacks],
}
"""Benchmark name (docs/benchmarks/<name>.json) -> the tables of each of its runs."""
