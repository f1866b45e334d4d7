"""``tta bench episodes``: images/s when B concurrent ``tpt``/``rlcf``/``auto`` images are run as
one episode set (``adapters.prompt_tuning``), for several B, in one process on the same models.
B = 1 is each image alone, as the reference code runs them. Synthetic images and ImageNet class
names by default; ``--world DOMAIN``: the world's test images of that domain and its 25 classes
(what ``auto`` needs: how many images escalate depends on them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench import tables
from contract.catalog import get_spec
from contract.request import normalize
from service.cli.common import model_names, print_table


def run_bench_episodes(args: argparse.Namespace) -> int:
    import torch

    from adapters.engine import Engine, EpisodeItem, load_models
    from adapters.state_store import InMemoryStateStore

    policy, reward, device = model_names(args)
    models = load_models(policy, reward, device=device, precision=args.precision)
    cuda = models.policy.clip.device.type == "cuda"
    labels, images = bench_inputs(args)
    fields = {f.name for f in dataclasses.fields(get_spec(args.method).options_type)}
    options = {"n_views": args.n_views} if "n_views" in fields else {}
    rows: list[dict[str, Any]] = []
    for size in (int(b) for b in args.batches.split(",")):
        sets = [images[i : i + size] for i in range(0, len(images) - size + 1, size)] or [images[:size]]
        request = normalize(args.method, labels, options=options)
        engine = Engine(models)
        engine.run_episodes(request, [EpisodeItem(i) for i in sets[0]])
        # Each B sees the stream from an empty TDA cache (auto's tier), as B = 1 did.
        engine.state_store = InMemoryStateStore()
        times = []
        for chunk in sets:
            start = time.perf_counter()
            engine.run_episodes(request, [EpisodeItem(image, seed) for seed, image in enumerate(chunk)])
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        # Throughput from the mean: auto's sets vary (most images settle at zero-shot).
        rows.append({"B": size, "sets": len(sets), "s_per_set": round(statistics.median(times), 4),
                     "images_per_s": round(size / statistics.mean(times), 2)})
    for row in rows:
        row["vs_B1"] = round(row["images_per_s"] / rows[0]["images_per_s"], 2)
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    inputs = f"world {args.world} images" if args.world else "synthetic images"
    print(f"{args.method}: {policy} + {reward}, {len(labels)} classes, {options or 'default options'}, "
          f"{inputs}, {device_name}; median set time, images/s from the mean")
    result = {"method": args.method, "policy": policy, "reward": reward, "classes": len(labels),
              "n_views": options.get("n_views"), "images": inputs, "device": device_name, "rows": rows}
    print_table(*tables.episodes(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def bench_inputs(args: argparse.Namespace) -> tuple[list[str], list[Any]]:
    """(labels, images) the sets are made of."""
    if args.world:
        from PIL import Image

        from world.data import TEST_SEEDS, sample_arrays
        from world.glyphs import CLASS_NAMES

        per_class = -(-args.images // len(CLASS_NAMES))
        pixels, _, _ = sample_arrays(args.world, per_class, seed_base=TEST_SEEDS)
        return list(CLASS_NAMES), [Image.fromarray(p) for p in pixels[: args.images]]
    from bench.latency import synthetic_image
    from bench.reference import _labels

    return _labels(args.classes), [synthetic_image(seed) for seed in range(args.images)]
