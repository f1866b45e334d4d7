"""``tta classify``: run a method on image files, locally.

A file that cannot be read as an image is reported (naming the file) and skipped; the other
images are still processed, and the exit code is 2 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from models.errors import InvalidImageError
from models.images import decode_image
from service.cli.common import (
    model_names,
    parse_option_flags,
    print_table,
    read_labels,
)

EXIT_BAD_INPUT = 2


def run_classify(args: argparse.Namespace) -> int:
    from adapters.engine import Engine, load_models
    from adapters.requests import prepare_request

    labels = read_labels(args)
    options = parse_option_flags(args.option)
    policy, reward, device = model_names(args)
    # Validate the whole request before loading any model: a typo should fail in milliseconds.
    prepare_request(args.method, labels, options=options, templates=args.templates,
                    top_k=args.top_k, has_reward_model=reward is not None)
    engine = Engine(load_models(policy, reward, device=device))

    outputs: list[dict[str, Any]] = []
    failed = 0
    for path in args.images:
        try:
            image = decode_image(Path(path).read_bytes(), field=path)
        except (OSError, InvalidImageError) as exc:
            failed += 1
            reason = exc.message if isinstance(exc, InvalidImageError) else exc.strerror
            print(f"error: {path}: {reason} (skipped; other images are still processed)",
                  file=sys.stderr)
            outputs.append({"image": path, "error": str(reason)})
            continue
        result = engine.run(args.method, image, labels, options=options,
                            templates=args.templates, top_k=args.top_k, seed=args.seed)
        outputs.append({"image": path, "method": args.method, **result.to_dict()})

    if args.json:
        print(json.dumps({"model": policy, "reward_model": reward, "results": outputs}, indent=2))
    else:
        rows = []
        for out in outputs:
            if "error" in out:
                rows.append([out["image"], "ERROR", "", "", "", out["error"]])
                continue
            rows.append([
                out["image"], out["label"], f"{out['score']:.3f}",
                out["zeroshot_top_k"][0]["label"], "yes" if out["changed"] else "no",
                f"{out['metrics']['compute_ms']:.0f}",
            ])
        print(f"model: {policy}   reward model: {reward or '-'}   method: {args.method}")
        print_table(["image", "label", "score", "zero-shot", "changed", "ms"], rows)
    return EXIT_BAD_INPUT if failed else 0
