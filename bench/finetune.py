"""``tta bench finetune``: does fine-tuning on rectified labels make a better model?

1. Label N images of the shifted domains from test-seed range A (``FINETUNE_SEEDS``) with a
   label source: a method variant run through the Engine (e.g. ``rlcf-tune:lr=0.01``), or
   ``truth`` (the true labels: the ceiling for this N).
2. Fine-tune the policy's visual encoder on them (``adapters.finetune``), store the result as a
   version in a model store and load it back by name (``world-policy@ft-...``).
3. Measure zero-shot of that version on range B (``TEST_SEEDS``, the accuracy bench's samples)
   of every test domain, against the original's zero-shot on the same images.

For each N in ``--sizes`` (nested: the first N labelled images), then for each hyperparameter
variant in ``--variants`` at the largest N. Prints tables; ``--json`` writes everything.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench import tables
from bench.runs import ProgressBar, parse_variant
from contract.request import normalize
from world.data import TEST_SEEDS, sample_arrays
from world.glyphs import CLASS_NAMES
from world.render import SHIFTED_DOMAINS, TEST_DOMAINS

FINETUNE_SEEDS = TEST_SEEDS + 200_000
"""Range A: images the label source labels and the fine-tune trains on (disjoint from B)."""
FRESH_EVAL_SEEDS = TEST_SEEDS + 400_000
"""Range C: for checking hyperparameters chosen by looking at range B on images nobody looked at."""
TEMPLATES = ("a photo of a {}.",)


def shifted_pool(n: int) -> tuple[list[Image.Image], list[int], list[str]]:
    """n images of range A, domains round-robin so every prefix covers all shifted domains."""
    per_domain = math.ceil(n / len(SHIFTED_DOMAINS))
    per_class = math.ceil(per_domain / len(CLASS_NAMES))
    pools = {d: sample_arrays(d, per_class, seed_base=FINETUNE_SEEDS) for d in SHIFTED_DOMAINS}
    images, labels, domains = [], [], []
    for i in range(per_domain):
        for domain in SHIFTED_DOMAINS:
            images.append(Image.fromarray(pools[domain][0][i]))
            labels.append(int(pools[domain][1][i]))
            domains.append(domain)
    return images[:n], labels[:n], domains[:n]


def label_images(engine: Any, source: str, images: list[Image.Image], truth: list[int],
                 show_progress: bool, first: int = 0) -> tuple[list[int], list[float], float]:
    """Labels from the source for the pool's images ``first`` onwards (image i runs with seed
    i), their scores, and the source's ms per image. An ``mllm`` source sees the accuracy
    bench's label set (``exemplar_bank``: train scenes, none of range A)."""
    from adapters.engine import RunContext
    from bench.mllm import uses_mllm
    from world.data import exemplar_bank

    if source == "truth":
        return list(truth[first:]), [1.0] * len(truth[first:]), 0.0
    method, options = parse_variant(source)
    context = (RunContext(exemplars=exemplar_bank(), label_set_version="world-bench")
               if uses_mllm(source) else None)
    bar = ProgressBar(len(images) - first, enabled=show_progress)
    labels, scores, started = [], [], time.perf_counter()
    for index, image in enumerate(images[first:], start=first):
        result = engine.classify(method, image, CLASS_NAMES, options=options, top_k=1, seed=index,
                                 context=context)
        labels.append(CLASS_NAMES.index(result.label))
        scores.append(result.score)
        bar()
    return labels, scores, 1000 * (time.perf_counter() - started) / max(1, len(images) - first)


def cached_labels(path: str | None, source: str, n: int,
                  compute: Any) -> tuple[list[int], list[float], float]:
    """The label source is the slow part: ``--labels-cache`` keeps its output between runs.
    The pool of n images starts with the pool of any smaller n (``shifted_pool``), so a cache
    for more images serves its prefix, and one for fewer is extended: ``compute(first)``
    labels images ``first`` onwards."""
    key = {"source": source, "seeds_from": FINETUNE_SEEDS}
    have: tuple[list[int], list[float], float] = ([], [], 0.0)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                cached = json.load(handle)
            if {k: cached["key"][k] for k in key} == key:
                have = cached["labels"], cached["scores"], cached["ms_per_image"]
        except (OSError, ValueError, KeyError):
            pass
    if len(have[0]) >= n:
        return have[0][:n], have[1][:n], have[2]
    more, more_scores, ms = compute(len(have[0]))
    labels, scores = have[0] + more, have[1] + more_scores
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"key": {**key, "n": n}, "labels": labels, "scores": scores, "ms_per_image": ms},
                      handle)
    return labels, scores, ms


@torch.no_grad()
def zeroshot_accuracy(policy: Any, eval_sets: dict[str, tuple[torch.Tensor, np.ndarray]]) -> dict[str, float]:
    text = policy.class_features(CLASS_NAMES, TEMPLATES)
    out = {}
    for domain, (views, labels) in eval_sets.items():
        predictions = policy.logits(policy.clip.encode_images(views), text).argmax(-1).cpu().numpy()
        out[domain] = round(float((predictions == labels).mean()), 4)
    return out


def eval_sets(image_size: int, per_class: int,
              seed_base: int = TEST_SEEDS) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    from adapters.views import clean_view

    sets = {}
    for domain in TEST_DOMAINS:
        images, labels, _ = sample_arrays(domain, per_class, seed_base=seed_base)
        views = torch.stack([clean_view(Image.fromarray(i), image_size) for i in images])
        sets[domain] = (views, labels)
    return sets


def summarise(acc: dict[str, float], base: dict[str, float]) -> dict[str, Any]:
    shifted = float(np.mean([acc[d] for d in SHIFTED_DOMAINS]))
    base_shifted = float(np.mean([base[d] for d in SHIFTED_DOMAINS]))
    return {"accuracy": acc, "shifted_mean": round(shifted, 4), "clean": acc["clean"],
            "gain_shifted_points": round(100 * (shifted - base_shifted), 2),
            "clean_delta_points": round(100 * (acc["clean"] - base["clean"]), 2)}


def run_one(policy_name: str, policy: Any, store: Any, images: list[Image.Image], labels: list[int],
            params: Any, evals: dict[str, Any], base: dict[str, float], device: str) -> dict[str, Any]:
    from adapters.finetune import finetune_visual
    from contract.names import split_version
    from models.classifier import ClipClassifier
    from models.loading import load_clip
    from models.store import Manifest, new_version_id

    outcome = finetune_visual(policy, images, labels, CLASS_NAMES, TEMPLATES, params)
    base_name = split_version(policy_name)[0]
    manifest = Manifest(base=base_name, version=new_version_id(), created_ms=int(time.time() * 1000),
                        label_source="bench", n_images=len(images),
                        hyperparameters=params.to_dict(), metrics=outcome.metrics)
    store.save(manifest, outcome.visual_state)
    # Loaded back by name through the store, as a worker would.
    tuned = ClipClassifier(load_clip(manifest.name, device, store_dir=store.root))
    row = {"n": len(images), "version": manifest.name, "hyperparameters": params.to_dict(),
           **summarise(zeroshot_accuracy(tuned, evals), base),
           "finetune_s": outcome.metrics["seconds"],
           "finetune_s_per_100_images": outcome.metrics["seconds_per_100_images"],
           "holdout_agreement_before": outcome.metrics["holdout_agreement_before"],
           "holdout_agreement_after": outcome.metrics["holdout_agreement_after"]}
    return row


def print_rows(title: str, rows: list[dict[str, Any]], base: dict[str, float]) -> None:
    from service.cli.common import print_table

    print(title)
    print_table(*tables.finetune_rows(rows, base))


def run_finetune_bench(args: argparse.Namespace) -> int:
    from adapters.engine import Engine, load_models
    from contract.errors import InvalidOptionsError
    from contract.finetune_params import params_from
    from models.store import ModelStore
    from service.cli.common import model_names, parse_option_flags

    policy_name, reward, device = model_names(args)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    try:
        base_params = params_from(parse_option_flags(args.param))
        variants = [params_from({**base_params.to_dict(), **parse_option_flags(v.split("+"))})
                    for v in args.variants or []]
    except ValueError as exc:
        raise InvalidOptionsError(str(exc), field="param") from exc
    from bench.mllm import load_bench_scorer, uses_mllm

    scorer = load_bench_scorer(args.mllm) if uses_mllm(args.source) else None
    engine = Engine(load_models(policy_name, reward if args.source != "truth" else None, device=device,
                                mllm=scorer))
    if args.source != "truth":
        method, options = parse_variant(args.source)
        engine.check(normalize(method, CLASS_NAMES, options=options))
    store = ModelStore(args.store or tempfile.mkdtemp(prefix="tta-finetune-bench-"))
    torch.manual_seed(0)

    images, truth, domains = shifted_pool(max(sizes))
    labels, scores, label_ms = cached_labels(
        args.labels_cache, args.source, len(images),
        lambda first: label_images(engine, args.source, images, truth, not args.no_progress, first))
    correct = np.array(labels) == np.array(truth)
    if args.min_score > 0:  # keep only confident labels (the service's min-confidence filter)
        kept = [i for i, s in enumerate(scores) if s >= args.min_score]
        images, labels = [images[i] for i in kept], [labels[i] for i in kept]
        sizes = [min(n, len(kept)) for n in sizes]
        kept_correct = float(correct[kept].mean()) if kept else float("nan")
        print(f"min score {args.min_score}: kept {len(kept)} labels, {100 * kept_correct:.1f}% correct")
    label_accuracy = {d: round(float(correct[[x == d for x in domains]].mean()), 4) for d in SHIFTED_DOMAINS}
    policy = engine.models.policy
    eval_seeds = FRESH_EVAL_SEEDS if args.fresh_eval else TEST_SEEDS
    evals = eval_sets(policy.clip.image_size, args.eval_per_class, eval_seeds)
    base = zeroshot_accuracy(policy, evals)

    curve = [run_one(policy_name, policy, store, images[:n], labels[:n], base_params, evals, base, device)
             for n in sizes]
    sweep = [run_one(policy_name, policy, store, images, labels, p, evals, base, device) for p in variants]
    report = {
        "policy": policy_name, "label_source": args.source, "range_a_seeds_from": FINETUNE_SEEDS,
        "eval_seeds_from": eval_seeds, "eval_images_per_domain": args.eval_per_class * len(CLASS_NAMES),
        "label_ms_per_image": round(label_ms, 2),
        "label_accuracy_on_a": {**label_accuracy, "mean": round(float(correct.mean()), 4)},
        "min_score": args.min_score, "n_after_filter": len(images),
        "zeroshot_before": summarise(base, base), "curve": curve, "variants": sweep,
        "torch_threads": torch.get_num_threads(),
    }
    print(f"policy {policy_name}, labels from {args.source} ({label_ms:.0f} ms/image; accuracy on "
          f"range A {100 * correct.mean():.1f}%), evaluated on {report['eval_images_per_domain']} "
          "images per domain of range "
          f"{'C' if args.fresh_eval else 'B'} (seeds from {eval_seeds})")
    print_rows("gain against N (default hyperparameters)", curve, base)
    if sweep:
        print_rows(f"hyperparameter variants at N = {len(images)}", sweep, base)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")
    return 0
