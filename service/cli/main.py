"""``tta``: run the service (serve, api, worker), classify, list models and methods, benchmarks."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from contract.errors import TTAError

EXIT_USAGE = 2
PLUGIN_GROUP = "tta.commands"
"""Entry points that add commands: each is called with the subparsers and ``add_model_args``."""


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="policy CLIP (default: $TTA_MODEL or the bundled default)")
    parser.add_argument(
        "--reward-model",
        help="reward CLIP for rlcf/rlcf-tune (default: $TTA_REWARD_MODEL; 'none' disables)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: $TTA_DEVICE or auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tta", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    classify = sub.add_parser("classify", help="classify image files, locally or with --server")
    classify.set_defaults(run=command("service.cli.classify", "run_classify"))
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    labels = classify.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated candidate labels")
    labels.add_argument("--labels-file", help="file with one label per line")
    labels.add_argument("--label-set", help="a label set stored in the service (with --server)")
    classify.add_argument("--method", default="zeroshot", help="zeroshot, tpt, rlcf, rlcf-tune")
    classify.add_argument("--top-k", type=int, default=5)
    classify.add_argument("--seed", type=int, default=0, help="seed of the augmented views")
    classify.add_argument("--templates", default=None,
                          help="template set: single (default) or imagenet80")
    classify.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                          help="method option, e.g. --option steps=2 (JSON values)")
    classify.add_argument("--json", action="store_true", help="print JSON instead of a table")
    classify.add_argument("--server", help="send to a running service (e.g. http://127.0.0.1:8000) "
                                           "instead of loading models here")
    classify.add_argument("--api-key", help="API key for --server (default $TTA_API_KEY)")
    add_model_args(classify)

    models = sub.add_parser("models", help="list bundled models (and open_clip architectures)")
    models.set_defaults(run=command("service.cli.listing", "run_models"))
    models.add_argument("--all", action="store_true", help="also list open_clip architectures")
    models.add_argument("--json", action="store_true")

    methods = sub.add_parser("methods", help="list adaptation methods and their options")
    methods.set_defaults(run=command("service.cli.listing", "run_methods"))
    methods.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run the service on this machine: Redis (private unless "
                           "TTA_REDIS_URL is set), worker(s) and the API")
    serve.set_defaults(run=command("service.cli.service_commands", "run_serve"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")

    api = sub.add_parser("api", help="run the HTTP API only (needs TTA_REDIS_URL)")
    api.set_defaults(run=command("service.cli.service_commands", "run_api"))
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    worker = sub.add_parser("worker", help="run one worker (needs TTA_REDIS_URL)")
    worker.set_defaults(run=command("service.cli.service_commands", "run_worker"))
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="port of the worker's /metrics (default $TTA_WORKER_METRICS_PORT; 0: none)")
    add_model_args(worker)

    keys = sub.add_parser("keys", help="API keys")
    keys.set_defaults(run=command("service.cli.service_commands", "run_keys"))
    keys_sub = keys.add_subparsers(dest="keys", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant; prints it once")
    create.add_argument("tenant")
    create.add_argument("--file", help="key file (default $TTA_API_KEYS_FILE)")

    from service.cli.finetune_parsers import add_finetune

    add_finetune(sub, add_model_args)
    for plugin in entry_points(group=PLUGIN_GROUP):  # e.g. ``tta bench`` (the bench package)
        try:
            register = plugin.load()
        except ImportError:  # (an image built without it: the API's and the worker's)
            continue
        register(sub, add_model_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        run: Callable[[argparse.Namespace], int] = args.run()
        return run(args)
    except TTAError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE


def command(module: str, function: str) -> Callable[[], Callable[[argparse.Namespace], int]]:
    """A command's function, imported when it runs (the CLI builds every parser at start, also
    in the API's image, which has no torch)."""
    return lambda: getattr(importlib.import_module(module), function)


if __name__ == "__main__":
    sys.exit(main())
