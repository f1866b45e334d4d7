"""``tta bench latency``: median ms per image for each method, on this machine.

Synthetic images (a disc on noise) and the first N ImageNet class names as the label set. Each
method is warmed up once (which also fills the text-feature caches, as in a running worker),
then timed image by image; the median is reported. A second table measures the text-context
truncation on its own: the class prompts encoded at the full 77-token context and truncated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench import tables
from service.cli.common import model_names, print_table


def synthetic_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.random((size[1], size[0], 3)) * 120).astype("uint8"))
    draw = ImageDraw.Draw(image)
    x, y, r = int(rng.integers(40, size[0] - 120)), int(rng.integers(40, size[1] - 120)), 80
    draw.ellipse((x, y, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def _median_ms(fn: Any, repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _truncation_figures(engine: Any, labels: list[str], repeats: int) -> dict[str, float]:
    import torch

    from contract.templates import SINGLE_TEMPLATE

    tower = engine.models.policy.tower
    prompts = [SINGLE_TEMPLATE.format(label) for label in labels]
    tokens = tower.tokenize(prompts)
    used = tower.used_length(tokens)

    def encode(length: int) -> None:
        with torch.no_grad():
            batch = tokens[:, :length]
            tower.encode_embeddings(tower.embed(batch), tower.pool_index(batch))

    encode(used)
    full = _median_ms(lambda _: encode(tokens.shape[1]), repeats)
    truncated = _median_ms(lambda _: encode(used), repeats)
    return {"context_full": int(tokens.shape[1]), "context_used": used,
            "full_ms": round(full, 2), "truncated_ms": round(truncated, 2),
            "speedup": round(full / truncated, 2)}


def run_latency(args: argparse.Namespace) -> int:
    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from adapters.engine import Engine, load_models

    policy, reward, device = model_names(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    labels = list(IMAGENET_CLASSNAMES[: args.n_labels])
    engine = Engine(load_models(policy, reward, device=device))
    clip = engine.models.policy.clip
    images = [synthetic_image(seed) for seed in range(args.images)]
    rows: list[dict[str, Any]] = []
    for method in methods:
        options = {} if method == "zeroshot" else {"n_views": args.n_views}
        engine.classify(method, images[0], labels, options=options)  # warm-up
        median = _median_ms(
            lambda i, m=method, o=options: engine.classify(m, images[i], labels, options=o, seed=i),
            len(images),
        )
        rows.append({"method": method, "median_ms": round(median, 1)})
        if clip.device.type == "cuda":
            torch.cuda.synchronize()
    truncation = _truncation_figures(engine, labels, repeats=5)
    report = {
        "model": policy, "reward_model": reward, "device": str(clip.device),
        "torch_threads": torch.get_num_threads(), "n_labels": len(labels),
        "n_views": args.n_views, "images": len(images), "methods": rows,
        "text_truncation": truncation,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"policy {policy}  reward {reward}  device {clip.device} "
          f"({torch.get_num_threads()} threads)  {len(labels)} labels  {args.n_views} views  "
          f"median of {len(images)} images")
    print_table(*tables.latency(report))
    print(f"\ntext tower, {len(labels)} class prompts: full context {truncation['context_full']} "
          f"tokens {truncation['full_ms']} ms; truncated to {truncation['context_used']} "
          f"tokens {truncation['truncated_ms']} ms ({truncation['speedup']}x)")
    return 0
