"""``tta bench episodes``: images/s when B concurrent ``tpt``/``rlcf`` images are tuned as one
episode set (``adapters.prompt_tuning``), for several B, in one process on the same models.
B = 1 is each image alone, as the reference code runs them."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench import tables
from contract.request import normalize
from service.cli.common import model_names, print_table


def run_bench_episodes(args: argparse.Namespace) -> int:
    import torch

    from adapters.engine import Engine, EpisodeItem, load_models
    from bench.latency import synthetic_image
    from bench.reference import _labels

    policy, reward, device = model_names(args)
    models = load_models(policy, reward, device=device, precision=args.precision)
    cuda = models.policy.clip.device.type == "cuda"
    engine = Engine(models)
    labels = _labels(args.classes)
    options = {"n_views": args.n_views}
    images = [synthetic_image(seed) for seed in range(args.images)]
    rows: list[dict[str, Any]] = []
    for size in (int(b) for b in args.batches.split(",")):
        sets = [images[i : i + size] for i in range(0, len(images) - size + 1, size)] or [images[:size]]
        request = normalize(args.method, labels, options=options)
        engine.run_episodes(request, [EpisodeItem(i) for i in sets[0]])
        times = []
        for chunk in sets:
            start = time.perf_counter()
            engine.run_episodes(request, [EpisodeItem(image, seed) for seed, image in enumerate(chunk)])
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        per_set = statistics.median(times)
        rows.append({"B": size, "sets": len(sets), "s_per_set": round(per_set, 4),
                     "images_per_s": round(size / per_set, 2)})
    for row in rows:
        row["vs_B1"] = round(row["images_per_s"] / rows[0]["images_per_s"], 2)
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.method}: {policy} + {reward}, {args.classes} classes, {args.n_views} views, "
          f"{device_name}, median set time")
    result = {"method": args.method, "policy": policy, "reward": reward, "classes": args.classes,
              "n_views": args.n_views, "device": device_name, "rows": rows}
    print_table(*tables.episodes(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
