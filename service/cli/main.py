"""``tta``: run the service (serve, api, worker), classify, list models and methods, benchmarks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from contract.errors import TTAError

EXIT_USAGE = 2


def _add_model_args(parser: argparse.ArgumentParser) -> None:
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
    _add_model_args(classify)

    models = sub.add_parser("models", help="list bundled models (and open_clip architectures)")
    models.add_argument("--all", action="store_true", help="also list open_clip architectures")
    models.add_argument("--json", action="store_true")

    methods = sub.add_parser("methods", help="list adaptation methods and their options")
    methods.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run the service on this machine: Redis (private unless "
                           "TTA_REDIS_URL is set), worker(s) and the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")

    api = sub.add_parser("api", help="run the HTTP API only (needs TTA_REDIS_URL)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    worker = sub.add_parser("worker", help="run one worker (needs TTA_REDIS_URL)")
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="port of the worker's /metrics (default $TTA_WORKER_METRICS_PORT; 0: none)")
    _add_model_args(worker)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant; prints it once")
    create.add_argument("tenant")
    create.add_argument("--file", help="key file (default $TTA_API_KEYS_FILE)")

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    latency = bench_sub.add_parser("latency", help="median ms per image, per method")
    latency.add_argument("--methods", default="zeroshot,tpt,rlcf,rlcf-tune")
    latency.add_argument("--n-labels", type=int, default=100, help="label-set size")
    latency.add_argument("--images", type=int, default=5, help="timed images per method")
    latency.add_argument("--n-views", type=int, default=64)
    latency.add_argument("--json", action="store_true")
    _add_model_args(latency)
    load = bench_sub.add_parser("load", help="bounded HTTP load: throughput, p50/p99, overhead")
    load.add_argument("--server", help="service URL (default: start tta serve on a free port)")
    load.add_argument("--api-key", help="API key (default $TTA_API_KEY)")
    load.add_argument("--method", default="zeroshot")
    load.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    load.add_argument("--concurrency", type=int, default=8)
    load.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    load.add_argument("--workers", type=int, default=1, help="workers of the spawned server")
    load.add_argument("--no-raw", dest="raw", action="store_false",
                      help="skip the in-process raw batched throughput")
    load.add_argument("--raw-seconds", type=float, default=5.0)
    load.add_argument("--json", action="store_true")
    load.add_argument("--breakdown", action="store_true",
                      help="with --server: where each request's time goes, from its events' ids "
                           "(only if the server's Redis shares this machine's clock; always on "
                           "for a spawned server)")
    load.add_argument("--client", choices=["lean", "httpx"], default="lean",
                      help="the load generator's HTTP client (default lean: see service/cli/lean_http.py)")
    peers = bench_sub.add_parser("peers", help="the service vs a plain FastAPI endpoint and LitServe")
    peers.add_argument("--peers", default="service,plain,litserve")
    peers.add_argument("--methods", default="zeroshot,rlcf")
    peers.add_argument("--concurrency", default="1,8,32")
    peers.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    peers.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    peers.add_argument("--client", choices=["lean", "httpx"], default="lean",
                       help="the load generator's HTTP client (the same for every server)")
    reference = bench_sub.add_parser(
        "reference", help="rlcf against the published per-image procedure: s/image, peak memory")
    reference.add_argument("--classes", default="100,1000", help="label-set sizes, comma-separated")
    reference.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, ...")
    reference.add_argument("--images", type=int, default=3, help="timed images per configuration")
    reference.add_argument("--n-views", type=int, default=64)
    reference.add_argument("--steps", type=int, default=3)
    reference.add_argument("--json", help="write the figures here")
    _add_model_args(reference)
    episodes = bench_sub.add_parser(
        "episodes", help="images/s of B concurrent tpt/rlcf/zero images run as one episode set")
    episodes.add_argument("--method", default="rlcf")
    episodes.add_argument("--batches", default="1,4,16", help="episode-set sizes B")
    episodes.add_argument("--classes", type=int, default=100)
    episodes.add_argument("--images", type=int, default=32, help="images per set size")
    episodes.add_argument("--n-views", type=int, default=64)
    episodes.add_argument("--precision", default="fp32")
    episodes.add_argument("--json", help="write the figures here")
    _add_model_args(episodes)
    hostile = bench_sub.add_parser(
        "hostile", help="memory and a neighbour's latency under the largest requests, label sets and "
                        "fine-tunes the limits allow")
    hostile.add_argument("--requests", type=int, default=5, help="requests of 16 6000x6000 JPEGs")
    hostile.add_argument("--mllm-requests", type=int, default=3, help="mllm requests on the largest set")
    hostile.add_argument("--calm-s", type=float, default=5.0, help="seconds of the calm baseline")
    hostile.add_argument("--finetune-s", type=float, default=15.0, help="seconds measured during a fine-tune")
    hostile.add_argument("--json", action="store_true")
    accuracy = bench_sub.add_parser(
        "accuracy", help="top-1, ECE and ms/image per method and domain on the offline world")
    accuracy.add_argument("--quick", action="store_true",
                          help="2 images per class per domain instead of 20")
    accuracy.add_argument("--n-per-class", type=int, default=None, help="override the sample size")
    accuracy.add_argument("--methods", default=None,
                          help="comma-separated (default: all); a variant overrides options: "
                               "rlcf:steps=10+lr=0.01")
    accuracy.add_argument("--json", metavar="FILE", help="write the results as JSON")
    accuracy.add_argument("--plot", metavar="FILE.png", help="write a bar chart")
    accuracy.add_argument("--no-progress", action="store_true", help="no progress bar")
    accuracy.add_argument("--mllm", default=None,
                          help="MLLM for mllm variants (a TTA_MLLM value; default world-mllm)")
    _add_model_args(accuracy)
    from service.cli.finetune_parsers import add_finetune, add_finetune_bench

    add_finetune_bench(bench_sub, _add_model_args)
    add_finetune(sub, _add_model_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in ("serve", "api", "worker", "keys"):
            from service.cli import service_commands

            runner = {"serve": service_commands.run_serve, "api": service_commands.run_api,
                      "worker": service_commands.run_worker, "keys": service_commands.run_keys}
            return runner[args.command](args)
        if args.command == "classify":
            from service.cli.classify import run_classify
            return run_classify(args)
        if args.command == "finetune":
            from service.cli.finetune import run_finetune
            return run_finetune(args)
        if args.command == "models":
            from service.cli.listing import run_models
            return run_models(args)
        if args.command == "methods":
            from service.cli.listing import run_methods
            return run_methods(args)
        if args.command == "bench" and args.bench == "latency":
            from service.cli.bench_latency import run_latency
            return run_latency(args)
        if args.command == "bench" and args.bench == "load":
            from service.cli.bench_load import run_bench_load
            return run_bench_load(args)
        if args.command == "bench" and args.bench == "peers":
            from service.cli.bench_peers import run_bench_peers
            return run_bench_peers(args)
        if args.command == "bench" and args.bench == "reference":
            from service.cli.bench_reference import run_bench_reference
            return run_bench_reference(args)
        if args.command == "bench" and args.bench == "episodes":
            from service.cli.bench_episodes import run_bench_episodes
            return run_bench_episodes(args)
        if args.command == "bench" and args.bench == "hostile":
            from service.cli.bench_hostile import run_bench_hostile
            return run_bench_hostile(args)
        if args.command == "bench" and args.bench == "accuracy":
            from world.bench_accuracy import run_accuracy
            return run_accuracy(args)
        if args.command == "bench" and args.bench == "finetune":
            from world.bench_finetune import run_finetune_bench
            return run_finetune_bench(args)
    except TTAError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
