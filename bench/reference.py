"""``tta bench reference``: the service's ``rlcf`` against the published per-image procedure
(``bench/reference_rlcf.py``) on the same models, images and views: seconds per image,
peak memory, the speed ratio, and how far their answers differ (they compute the same function:
context truncation and feature reuse change the cost, not the result).

Each (procedure, class count) runs in its own process, so one's peak memory is not the other's.
Peak memory: on CUDA the allocator's peak; on the CPU the growth of the process's peak resident
set over its size once the models are loaded.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import tables
from service.cli.common import model_names, print_table

PROCEDURES = ("reference", "service")


def _labels(n: int) -> list[str]:
    """n distinct ImageNet class names (a name seen before gets a number: the list repeats a few)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    labels: list[str] = []
    seen: set[str] = set()
    for i in range(n):
        name = IMAGENET_CLASSNAMES[i % len(IMAGENET_CLASSNAMES)]
        label = name if name not in seen else f"{name} {i}"
        seen.add(label)
        labels.append(label)
    return labels


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure_one(config: dict[str, Any]) -> dict[str, Any]:
    """One procedure at one class count, in this process: warm-up image, then timed images."""
    import torch

    from adapters.engine import Engine, load_models
    from adapters.views import make_views
    from bench.latency import synthetic_image
    from bench.reference_rlcf import ReferenceRLCF

    torch.manual_seed(0)
    models = load_models(config["policy"], config["reward"], device=config["device"],
                         precision=config["precision"])
    clip = models.policy.clip
    cuda = clip.device.type == "cuda"
    labels = _labels(config["classes"])
    engine = Engine(models)
    reference = ReferenceRLCF(clip, models.reward, labels, steps=config["steps"])  # type: ignore[arg-type]
    options = {"n_views": config["n_views"], "steps": config["steps"]}

    top = min(100, len(labels))  # the service answers at most 100 labels

    def run(seed: int) -> dict[str, float]:
        """The image's top labels -> probability."""
        image = synthetic_image(seed)
        if config["procedure"] == "service":
            result = engine.classify("rlcf", image, labels, options=options, seed=seed, top_k=top)
            return {s.label: s.score for s in result.top_k}
        views = make_views(image, config["n_views"], clip.image_size, seed).to(clip.device)
        values, indices = reference.classify(views).float().cpu().topk(top)
        return {labels[i]: v for v, i in zip(values.tolist(), indices.tolist(), strict=True)}

    base_mb = _rss_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    run(10_000)  # warm-up: caches and lazy initialisation, as in a running worker
    times, answers = [], []
    for seed in range(config["images"]):
        start = time.perf_counter()
        answers.append(run(seed))
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if cuda
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_mb)
    return {"s_per_image": statistics.median(times), "peak_mb": round(peak_mb, 1),
            "answers": answers,
            "device": torch.cuda.get_device_name() if cuda else "cpu"}


def _in_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.reference", json.dumps(config)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{config['procedure']} at {config['classes']} classes failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_bench_reference(args: argparse.Namespace) -> int:
    policy, reward, device = model_names(args)
    if reward is None:
        print("tta bench reference needs a reward model (--reward-model)", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for classes in (int(c) for c in args.classes.split(",")):
        for precision in args.precision.split(","):
            measured = {procedure: _in_subprocess({
                "procedure": procedure, "policy": policy, "reward": reward, "device": device,
                "precision": precision, "classes": classes, "images": args.images,
                "n_views": args.n_views, "steps": args.steps}) for procedure in PROCEDURES}
            ref, svc = measured["reference"], measured["service"]
            difference = max(abs(ref_answer.get(label, 0.0) - p)
                             for ref_answer, svc_answer in zip(ref["answers"], svc["answers"], strict=True)
                             for label, p in svc_answer.items())
            rows.append({
                "classes": classes, "precision": precision, "device": svc["device"],
                "reference_s": round(ref["s_per_image"], 4), "service_s": round(svc["s_per_image"], 4),
                "speedup": round(ref["s_per_image"] / svc["s_per_image"], 2),
                "reference_peak_mb": ref["peak_mb"], "service_peak_mb": svc["peak_mb"],
                "max_prob_difference": float(f"{float(difference):.2e}"),
            })
    header = {"policy": policy, "reward": reward, "images": args.images, "n_views": args.n_views,
              "steps": args.steps, "rows": rows}
    print(f"rlcf per image: {policy} + {reward}, {args.n_views} views, {args.steps} steps, "
          f"median of {args.images} images")
    print_table(*tables.reference(header))
    if args.json:
        Path(args.json).write_text(json.dumps(header, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # one measurement, for run_bench_reference's subprocesses
    print(json.dumps(measure_one(json.loads(sys.argv[1]))))
