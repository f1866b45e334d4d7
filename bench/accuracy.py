"""``tta bench accuracy``: top-1, ECE and median ms per image, per method and domain, on the
world's fixed test samples (seeds from ``TEST_SEEDS``, disjoint from training and validation)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np
from PIL import Image

from adapters.engine import RunContext
from bench import tables
from bench.runs import ProgressBar, Row, parse_variant, split_unquoted
from contract.request import normalize
from service.cli.common import print_table
from world.data import TEST_SEEDS, VALIDATION_SEEDS, exemplar_bank, sample_arrays
from world.ece import expected_calibration_error, reliability_bins
from world.glyphs import CLASS_NAMES
from world.render import TEST_DOMAINS

SPLITS = {"test": TEST_SEEDS, "validation": VALIDATION_SEEDS}
"""Which of the world's seed ranges a run samples: the figures the docs quote come from the
test seeds; defaults (such as ``auto``'s) are chosen on the validation seeds."""
QUICK_PER_CLASS = 2
FULL_PER_CLASS = 20


def evaluate(engine: Any, variant: str, domain: str, n_per_class: int, progress: Any,
             seed_base: int = TEST_SEEDS) -> Row:
    method, options = parse_variant(variant)
    images, labels, _ = sample_arrays(domain, n_per_class, seed_base=seed_base)
    confidences, correct, times = [], [], []
    answered_by: Counter[str] = Counter()
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        start = time.perf_counter()
        # Online methods (TDA) see each domain as one fresh test stream, as in their papers.
        result = engine.classify(method, Image.fromarray(pixels), CLASS_NAMES, options=options, top_k=1,
                            seed=index, context=RunContext(state_key=f"bench|{variant}|{domain}"))
        times.append((time.perf_counter() - start) * 1000.0)
        confidences.append(result.score)
        correct.append(result.label == CLASS_NAMES[label])
        if "tier" in result.metrics:
            answered_by[result.metrics["tier"]] += 1
        progress()
    return Row(variant, domain, round(float(np.mean(correct)), 4),
               round(expected_calibration_error(np.array(confidences), np.array(correct)), 4),
               round(statistics.median(times), 2), round(statistics.mean(times), 2),
               dict(answered_by) or None,
               [(round(c, 4), round(a, 4), n) for c, a, n in reliability_bins(np.array(confidences),
                                                                             np.array(correct), bins=10)])


def split_variants(text: str) -> list[str]:
    """The ``--methods`` list: comma-separated (not inside double quotes), or semicolon-separated
    when a variant holds commas unquoted (``auto:tiers=tda,rlcf:steps=10``)."""
    return [m.strip() for m in split_unquoted(text, ";" if ";" in text else ",") if m.strip()]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def plot(rows: list[Row], methods: list[str], domains: list[str], path: str, title: str) -> None:
    by_key = {(r.method, r.domain): r.accuracy for r in rows}
    width = 0.8 / len(methods)
    fig, ax = pyplot().subplots(figsize=(10, 4.5))
    for i, method in enumerate(methods):
        xs = [d + i * width for d in range(len(domains))]
        ax.bar(xs, [100 * by_key[(method, dom)] for dom in domains], width, label=method)
    ax.set_xticks([d + width * (len(methods) - 1) / 2 for d in range(len(domains))], domains)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def auto_threshold(variant: str) -> float:
    """The zero-shot threshold of an ``auto`` variant (its sweep is drawn in this order)."""
    from contract.method_options import AutoOptions

    return float(parse_variant(variant)[1].get("threshold", AutoOptions.threshold))


def plot_pareto(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Shifted-domain accuracy against mean ms per image: one point per method variant, the
    ``auto`` variants joined as one line (its threshold sweep)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    points = {m: (tables.mean_ms(rows, m), 100 * (tables.shifted_average(rows, m) or 0.0)) for m in methods}
    fig, ax = pyplot().subplots(figsize=(9, 5))
    autos = [points[m] for m in sorted((m for m in methods if m.split(":")[0] == "auto"), key=auto_threshold)]
    if autos:
        ax.plot(*zip(*autos, strict=True), "-o", color="tab:red", label="auto (threshold sweep)")
    for method, (ms, acc) in points.items():
        if method.split(":")[0] != "auto":
            ax.plot(ms, acc, "o", color="tab:blue")
        ax.annotate(method, (ms, acc), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
             if min(ms for ms, _ in points.values()) / 2 <= t <= max(ms for ms, _ in points.values()) * 2]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("mean ms per image (log)")
    ax.set_ylabel("shifted-domain top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if autos:
        ax.legend(loc="lower right")
    save(fig, path)


def plot_reliability(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Accuracy against confidence per method (all domains pooled): on the diagonal, a method's
    confidence means what it says; below, it is overconfident. ``auto``'s threshold sweep is
    left to the Pareto chart: only its default is drawn."""
    methods = list(dict.fromkeys(r["method"] for r in rows if r.get("reliability")
                                 and not r["method"].startswith("auto:")))
    fig, ax = pyplot().subplots(figsize=(6.5, 6))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    for method in methods:
        pooled: dict[int, list[float]] = {}
        for row in (r for r in rows if r["method"] == method):
            for confidence, accuracy, count in row["reliability"]:
                bin_sums = pooled.setdefault(min(int(confidence * 10), 9), [0.0, 0.0, 0.0])
                bin_sums[0] += confidence * count
                bin_sums[1] += accuracy * count
                bin_sums[2] += count
        points = sorted((c / n, a / n) for c, a, n in pooled.values())
        ax.plot(*zip(*points, strict=True), "-o", markersize=3, label=method)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save(fig, path)


def run_accuracy(args: argparse.Namespace) -> int:
    from adapters.engine import Engine, load_models
    from contract.catalog import method_specs
    from service.cli.common import model_names

    policy, reward, device = model_names(args)
    # The world has no MLLM: by default, every method that needs no exemplars.
    default = ",".join(s.name for s in method_specs() if not s.needs_exemplars)
    methods = split_variants(args.methods or default)
    seed_base = SPLITS[args.split]
    domains = list(TEST_DOMAINS)
    n_per_class = args.n_per_class or (QUICK_PER_CLASS if args.quick else FULL_PER_CLASS)
    from bench.mllm import MLLM_ALONE, evaluate_mllm, evaluate_mllm_alone, load_bench_scorer, uses_mllm

    wants_mllm = any(uses_mllm(m) for m in methods)
    scorer = load_bench_scorer(args.mllm) if wants_mllm else None
    engine = Engine(load_models(policy, reward, device=device, mllm=scorer))
    exemplars = exemplar_bank() if wants_mllm else {}
    for variant in methods:  # a typo should fail now, not after minutes of other methods
        if variant == MLLM_ALONE:
            continue
        method, options = parse_variant(variant)
        engine.check(normalize(method, CLASS_NAMES, options=options))
    n_per_domain = n_per_class * len(CLASS_NAMES)
    bar = ProgressBar(len(methods) * len(domains) * n_per_domain, enabled=not args.no_progress)
    rows, mllm_stats = [], []
    for variant in methods:
        for domain in domains:
            if variant == MLLM_ALONE:
                row = evaluate_mllm_alone(scorer, domain, n_per_class, bar, seed_base)
            elif uses_mllm(variant):
                row, stats = evaluate_mllm(engine, variant, domain, n_per_class, bar, exemplars, seed_base)
                mllm_stats.append(stats)
            else:
                row = evaluate(engine, variant, domain, n_per_class, bar, seed_base)
            rows.append(row)

    report: dict[str, Any] = {"model": policy, "reward_model": reward or "", "split": args.split,
                              "n_per_domain": n_per_domain, "results": [asdict(r) for r in rows]}
    if scorer is not None:
        report["mllm"] = {"scorer": scorer.name, "stats": [asdict(s) for s in mllm_stats]}
    print(f"policy {policy}  reward {reward}  {n_per_domain} images per domain "
          f"({args.split} seeds, from {seed_base})")
    print_table(*tables.accuracy(report))
    if any(r.answered_by for r in rows):
        print("auto: the tier that answered")
        print_table(*tables.auto_tiers(report))
    if mllm_stats:
        from bench.mllm import print_mllm_table

        print(f"MLLM {scorer.name if scorer else ''}: what the rectification did")
        print_mllm_table(mllm_stats)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot(rows, methods, domains, args.plot,
             f"{policy} (reward {reward}), {n_per_domain} images per domain")
        print(f"wrote {args.plot}")
    if args.reliability:
        plot_reliability(report["results"], args.reliability,
                         f"{policy}: reliability, {n_per_domain} images per domain, all domains pooled")
        print(f"wrote {args.reliability}")
    if args.pareto:
        plot_pareto(report["results"], args.pareto,
                    f"{policy} (reward {reward}): accuracy against cost, {n_per_domain} images per domain")
        print(f"wrote {args.pareto}")
    return 0
