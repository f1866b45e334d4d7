"""Argument parsers of ``tta bench finetune`` and ``tta finetune`` (torch-free: the CLI builds
every parser at start, also in the API image)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

AddModelArgs = Callable[[argparse.ArgumentParser], None]


def add_finetune_bench(bench_sub: Any, add_model_args: AddModelArgs) -> None:
    parser = bench_sub.add_parser("finetune", help="fine-tune on rectified labels; zero-shot gain of "
                                  "the new version on unseen images, against N")
    parser.add_argument("--source", default="rlcf-tune:lr=0.01",
                        help="label source: a method variant (rlcf-tune:lr=0.01) or 'truth'")
    parser.add_argument("--sizes", default="100,300,1000", help="N values (nested subsets)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="fine-tuning hyperparameter for the curve, e.g. --param lr=1e-4")
    parser.add_argument("--variants", action="append", metavar="K=V+K=V",
                        help="extra hyperparameter variants, run at the largest N (repeatable)")
    parser.add_argument("--eval-per-class", type=int, default=8,
                        help="range-B images per class per domain (8: 200 per domain)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="train only on labels whose score is at least this")
    parser.add_argument("--labels-cache", metavar="FILE",
                        help="reuse the label source's output from FILE (written if absent)")
    parser.add_argument("--store", help="model store to write the versions to (default: a temp dir)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--no-progress", action="store_true")
    add_model_args(parser)
