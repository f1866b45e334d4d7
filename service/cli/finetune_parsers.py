"""The argument parser of ``tta finetune`` (torch-free: the CLI builds every parser at start,
also in the API image)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

AddModelArgs = Callable[[argparse.ArgumentParser], None]


def add_finetune(sub: Any, add_model_args: AddModelArgs) -> None:
    from service.cli.finetune import run_finetune

    parser = sub.add_parser("finetune", help="fine-tune the policy on rectified labels (server or local)")
    parser.set_defaults(run=lambda: run_finetune)
    actions = parser.add_subparsers(dest="finetune", required=True)

    def server_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", help="service URL, e.g. http://127.0.0.1:8000")
        p.add_argument("--api-key", help="API key for --server (default $TTA_API_KEY)")

    start = actions.add_parser("start", help="start a fine-tune and follow it with a progress bar")
    server_args(start)
    start.add_argument("--label-set", help="(server) the label set whose retained answers to train on")
    start.add_argument("--source", default="any", help="(server) mllm, rlcf, rlcf-tune, tpt or any")
    start.add_argument("--changed-only", action="store_true", help="(server) only changed labels")
    start.add_argument("--min-score", type=float, help="(server) minimum confidence / gate score")
    start.add_argument("--since-ms", type=int, help="(server) only answers from this time (epoch ms)")
    start.add_argument("--until-ms", type=int, help="(server) only answers up to this time (epoch ms)")
    start.add_argument("--max-images", type=int, help="(server) newest matching answers, at most")
    start.add_argument("--from-model", help="(server) version to start from, or 'base' (default: "
                                            "the version the label set points at)")
    start.add_argument("--activate", action="store_true",
                       help="(server) point the label set at the new version when done")
    start.add_argument("--data", help="(local) JSON lines {\"image\": path, \"label\": name}")
    start.add_argument("--labels", help="(local) comma-separated class names (default: those in --data)")
    start.add_argument("--store", help="(local) model store directory (default $TTA_MODEL_STORE)")
    start.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="hyperparameter, e.g. --param lr=1e-4 --param epochs=3")
    start.add_argument("--no-progress", action="store_true")
    add_model_args(start)

    cancel = actions.add_parser("cancel", help="cancel a running fine-tune")
    cancel.add_argument("finetune_id")
    server_args(cancel)

    retention = actions.add_parser("retention", help="keep a label set's images for fine-tuning")
    retention.add_argument("label_set")
    toggle = retention.add_mutually_exclusive_group(required=True)
    toggle.add_argument("--enable", dest="enable", action="store_true")
    toggle.add_argument("--disable", dest="enable", action="store_false")
    retention.add_argument("--max-bytes", type=int)
    retention.add_argument("--max-days", type=float)
    server_args(retention)

    point = actions.add_parser("point", help="answer a label set with a version, 'base' or 'rollback'")
    point.add_argument("label_set")
    point.add_argument("model", help="NAME@VERSION, base (the worker's model) or rollback")
    server_args(point)
