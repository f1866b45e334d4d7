"""``tta bench drift``: does the drift score (``service.queue.drift``) stay quiet on a stable
stream and cross its alert threshold soon after the inputs shift?

A stream of clean test images (the world's test seeds, shuffled) forms the reference and then
goes on: every score above the threshold there is a false alarm. Then, for each shifted domain,
the same clean start switches to that domain: the delay is the number of requests after the
switch until the score first passes the threshold. The window and reference are the in-process
mirror of what the worker keeps in Redis (``DriftWindow``; tests/integration/test_drift.py
checks they agree), so the bench needs no service.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from PIL import Image

from bench.runs import ProgressBar, parse_variant
from service.cli.common import print_table
from service.queue.drift import ALERT_THRESHOLD, DriftLimits, DriftWindow, Observation, observe
from world.data import TEST_SEEDS, sample_arrays
from world.glyphs import CLASS_NAMES

CLEAN_START = 400
"""Clean requests before a switch: the reference (200) and as many again."""


def observations(engine: Any, variant: str, domain: str, per_class: int, seed: int,
                 progress: Any) -> list[Observation]:
    method, options = parse_variant(variant)
    images, _, _ = sample_arrays(domain, per_class, seed_base=TEST_SEEDS + seed)
    order = np.random.default_rng(seed).permutation(len(images))
    out = []
    for i in order:
        image = Image.fromarray(images[i])
        result = engine.classify(method, image, CLASS_NAMES, options=options, seed=int(i))
        observation = observe(result.to_dict(), CLASS_NAMES)
        assert observation is not None
        out.append(observation)
        progress()
    return out


def false_alarms(stream: list[Observation], limits: DriftLimits) -> dict[str, Any]:
    window = DriftWindow(limits.reference_size, limits.window_size)
    scores = [s for s in (window.add(o).score for o in stream) if s is not None]
    return {"requests": len(stream), "scored": len(scores),
            "alarms": sum(s > ALERT_THRESHOLD for s in scores),
            "max_score": round(max(scores), 2), "p99_score": round(float(np.percentile(scores, 99)), 2)}


def delay(start: list[Observation], shifted: list[Observation], limits: DriftLimits) -> dict[str, Any]:
    window = DriftWindow(limits.reference_size, limits.window_size)
    before = [window.add(o).score for o in start]
    after = [window.add(o).score for o in shifted]
    crossed = next((i + 1 for i, s in enumerate(after) if s is not None and s > ALERT_THRESHOLD), None)
    return {"requests_after_switch": crossed,
            "alarms_before_switch": sum((s or 0) > ALERT_THRESHOLD for s in before),
            "max_score_after": round(max(s or 0 for s in after), 2)}


def run_drift(args: argparse.Namespace) -> int:
    from adapters.engine import Engine, load_models
    from service.cli.common import model_names

    policy, reward, device = model_names(args)
    engine = Engine(load_models(policy, reward, device=device))
    limits = DriftLimits()
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    clean_per_class = -(-args.clean // len(CLASS_NAMES))
    shifted_per_class = -(-args.shifted // len(CLASS_NAMES))
    bar = ProgressBar(len(CLASS_NAMES) * (clean_per_class + shifted_per_class * len(domains)),
                      enabled=not args.no_progress)
    clean = observations(engine, args.method, "clean", clean_per_class, 0, bar)[: args.clean]
    shifts = {d: observations(engine, args.method, d, shifted_per_class, 1, bar)[: args.shifted]
              for d in domains}
    report = {"model": policy, "method": args.method, "threshold": ALERT_THRESHOLD,
              "reference_size": limits.reference_size, "window_size": limits.window_size,
              "clean": false_alarms(clean, limits),
              "switches": {d: delay(clean[:CLEAN_START], s, limits) for d, s in shifts.items()}}
    print(f"policy {policy}, method {args.method}: reference {limits.reference_size}, window "
          f"{limits.window_size}, alert above {ALERT_THRESHOLD}")
    from bench import tables

    print_table(*tables.drift(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")
    return 0
