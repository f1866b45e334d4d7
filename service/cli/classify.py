"""``tta classify``: run a method on image files, locally or on a server (``--server URL``).

A file that cannot be read as an image is reported (naming the file) and skipped; the other
images are still processed, and the exit code is 2 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from contract.errors import InvalidImageError
from contract.images import decode_image
from service.cli.common import (
    model_names,
    parse_option_flags,
    print_table,
    read_labels,
)

EXIT_BAD_INPUT = 2


def _readable(paths: list[str]) -> tuple[list[tuple[str, bytes]], dict[str, dict[str, Any]]]:
    """(path, bytes) of the files that decode as images, and an error entry for each other."""
    good, errors = [], {}
    for path in paths:
        try:
            data = Path(path).read_bytes()
            decode_image(data, field=path)
        except (OSError, InvalidImageError) as exc:
            reason = exc.message if isinstance(exc, InvalidImageError) else exc.strerror
            print(f"error: {path}: {reason} (skipped; other images are still processed)",
                  file=sys.stderr)
            errors[path] = {"image": path, "error": str(reason)}
            continue
        good.append((path, data))
    return good, errors


def run_classify(args: argparse.Namespace) -> int:
    if args.server:
        return _remote(args)
    if args.label_set:
        print("error: --label-set needs --server (label sets live in the service)", file=sys.stderr)
        return EXIT_BAD_INPUT
    from adapters.engine import Engine, load_models
    from contract.catalog import require_capable
    from contract.request import normalize

    labels = read_labels(args)
    policy, reward, device = model_names(args)
    # Validate the whole request before loading any model: a typo should fail in milliseconds.
    request = normalize(args.method, labels, options=parse_option_flags(args.option),
                        templates=args.templates, top_k=args.top_k, seed=args.seed)
    require_capable(request.method, has_reward_model=reward is not None, has_mllm=False)
    engine = Engine(load_models(policy, reward, device=device))
    images, outputs = _readable(args.images)
    for index, (path, data) in enumerate(images):
        result = engine.run(request, decode_image(data, field=path), seed=args.seed + index)
        outputs[path] = {**result.to_dict(), "image": path, "method": args.method}
    _print(args, [outputs[path] for path in args.images], f"model: {policy}   reward model: {reward or '-'}",
           {"model": policy, "reward_model": reward})
    return EXIT_BAD_INPUT if len(images) < len(args.images) else 0


def _remote(args: argparse.Namespace) -> int:
    from service.client import TTAClient, TTAClientError

    labels = None if args.label_set else read_labels(args)
    images, outputs = _readable(args.images)
    if images:
        api_key = args.api_key or os.environ.get("TTA_API_KEY")
        with TTAClient(args.server, api_key=api_key) as client:
            try:
                job = client.classify([data for _, data in images], labels, label_set=args.label_set,
                                      method=args.method, top_k=args.top_k,
                                      options=parse_option_flags(args.option),
                                      templates=args.templates, seed=args.seed)
            except TTAClientError as exc:
                field = f" ({exc.field})" if exc.field else ""
                print(f"error: server said {exc.status} {exc.code}{field}: {exc.message}", file=sys.stderr)
                return EXIT_BAD_INPUT
        for (path, _), result in zip(images, job["results"], strict=True):
            outputs[path] = {**result, "image": path, "method": args.method}
    _print(args, [outputs[path] for path in args.images], f"server: {args.server}", {"server": args.server})
    return EXIT_BAD_INPUT if len(images) < len(args.images) else 0


def _print(args: argparse.Namespace, outputs: list[dict[str, Any]], header: str,
           meta: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({**meta, "results": outputs}, indent=2))
        return
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
    print(f"{header}   method: {args.method}")
    print_table(["image", "label", "score", "zero-shot", "changed", "ms"], rows)
