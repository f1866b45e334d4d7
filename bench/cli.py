"""``tta bench ...``: the benchmarks' commands, added to the ``tta`` CLI through its
``tta.commands`` entry point (``pyproject.toml``), so the service never imports this package."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from service.cli.main import command

AddModelArgs = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, add_model_args: AddModelArgs) -> None:
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    latency = bench_sub.add_parser("latency", help="median ms per image, per method")
    latency.set_defaults(run=command("bench.latency", "run_latency"))
    latency.add_argument("--methods", default="zeroshot,tpt,rlcf,rlcf-tune")
    latency.add_argument("--n-labels", type=int, default=100, help="label-set size")
    latency.add_argument("--images", type=int, default=5, help="timed images per method")
    latency.add_argument("--n-views", type=int, default=64)
    latency.add_argument("--json", action="store_true")
    add_model_args(latency)
    load = bench_sub.add_parser("load", help="bounded HTTP load: throughput, p50/p99, overhead")
    load.set_defaults(run=command("bench.load", "run_bench_load"))
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
                      help="the load generator's HTTP client (default lean: see bench/lean_http.py)")
    peers = bench_sub.add_parser("peers", help="the service vs a plain FastAPI endpoint and LitServe")
    peers.set_defaults(run=command("bench.peers", "run_bench_peers"))
    peers.add_argument("--peers", default="service,plain,litserve")
    peers.add_argument("--methods", default="zeroshot,rlcf")
    peers.add_argument("--concurrency", default="1,8,32")
    peers.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    peers.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    peers.add_argument("--client", choices=["lean", "httpx"], default="lean",
                       help="the load generator's HTTP client (the same for every server)")
    reference = bench_sub.add_parser(
        "reference", help="rlcf against the published per-image procedure: s/image, peak memory")
    reference.set_defaults(run=command("bench.reference", "run_bench_reference"))
    reference.add_argument("--classes", default="100,1000", help="label-set sizes, comma-separated")
    reference.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, ...")
    reference.add_argument("--images", type=int, default=3, help="timed images per configuration")
    reference.add_argument("--n-views", type=int, default=64)
    reference.add_argument("--steps", type=int, default=3)
    reference.add_argument("--json", help="write the figures here")
    add_model_args(reference)
    episodes = bench_sub.add_parser(
        "episodes", help="images/s of B concurrent tpt/rlcf/zero/auto images run as one episode set")
    episodes.set_defaults(run=command("bench.episodes", "run_bench_episodes"))
    episodes.add_argument("--method", default="rlcf")
    episodes.add_argument("--batches", default="1,4,16", help="episode-set sizes B")
    episodes.add_argument("--classes", type=int, default=100)
    episodes.add_argument("--world", metavar="DOMAIN",
                          help="the world's test images of this domain and its classes (not synthetic)")
    episodes.add_argument("--images", type=int, default=32, help="images per set size")
    episodes.add_argument("--n-views", type=int, default=64)
    episodes.add_argument("--precision", default="fp32")
    episodes.add_argument("--json", help="write the figures here")
    add_model_args(episodes)
    failover = bench_sub.add_parser(
        "failover", help="a Redis master SIGKILLed under load, failing over through three sentinels: "
                         "jobs accepted, lost, and the client-visible error window")
    failover.set_defaults(run=command("bench.failover", "run_bench_failover"))
    failover.add_argument("--runs", type=int, default=5)
    failover.add_argument("--json", help="write the figures here")
    hostile = bench_sub.add_parser(
        "hostile", help="memory and a neighbour's latency under the largest requests, label sets and "
                        "fine-tunes the limits allow")
    hostile.set_defaults(run=command("bench.hostile", "run_bench_hostile"))
    hostile.add_argument("--requests", type=int, default=5, help="requests of 16 6000x6000 JPEGs")
    hostile.add_argument("--mllm-requests", type=int, default=3, help="mllm requests on the largest set")
    hostile.add_argument("--calm-s", type=float, default=5.0, help="seconds of the calm baseline")
    hostile.add_argument("--finetune-s", type=float, default=15.0, help="seconds measured during a fine-tune")
    hostile.add_argument("--json", action="store_true")
    drift = bench_sub.add_parser(
        "drift", help="the drift score on a stable stream (false alarms) and after a switch of domain")
    drift.set_defaults(run=command("bench.drift", "run_drift"))
    drift.add_argument("--method", default="zeroshot", help="method variant answering the stream")
    drift.add_argument("--clean", type=int, default=2000, help="clean requests (false-alarm stream)")
    drift.add_argument("--shifted", type=int, default=200, help="requests after each switch")
    drift.add_argument("--domains", default="sketch,corruption,rendition,hard,v2",
                       help="domains the stream switches to")
    drift.add_argument("--json", metavar="FILE", help="write the results as JSON")
    drift.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(drift)

    accuracy = bench_sub.add_parser(
        "accuracy", help="top-1, ECE and ms/image per method and domain on the offline world")
    accuracy.set_defaults(run=command("bench.accuracy", "run_accuracy"))
    accuracy.add_argument("--quick", action="store_true",
                          help="2 images per class per domain instead of 20")
    accuracy.add_argument("--n-per-class", type=int, default=None, help="override the sample size")
    accuracy.add_argument("--methods", default=None,
                          help="comma-separated (default: all); a variant overrides options: "
                               "rlcf:steps=10+lr=0.01; separate with ';' when a variant holds commas "
                               "(auto:tiers=tda,rlcf:steps=10); mllm-alone: the MLLM as a classifier on "
                               "its own (every class asked, no exemplars, no CLIP)")
    accuracy.add_argument("--split", choices=["test", "validation"], default="test",
                          help="the world's seed range: test (the docs' figures) or validation "
                               "(where defaults are chosen)")
    accuracy.add_argument("--json", metavar="FILE", help="write the results as JSON")
    accuracy.add_argument("--plot", metavar="FILE.png", help="write a bar chart")
    accuracy.add_argument("--pareto", metavar="FILE.png",
                          help="write shifted accuracy against mean ms per image (auto's variants as a line)")
    accuracy.add_argument("--reliability", metavar="FILE.png",
                          help="write a reliability diagram (accuracy against confidence) per method")
    accuracy.add_argument("--no-progress", action="store_true", help="no progress bar")
    accuracy.add_argument("--mllm", default=None,
                          help="MLLM for mllm variants (a TTA_MLLM value; default world-mllm)")
    add_model_args(accuracy)
    _add_finetune(bench_sub, add_model_args)


def _add_finetune(bench_sub: Any, add_model_args: AddModelArgs) -> None:
    parser = bench_sub.add_parser("finetune", help="fine-tune on rectified labels; zero-shot gain of "
                                  "the new version on unseen images, against N")
    # lr 0.03 and 10 steps: 64% correct labels on range A, against 57% at lr 0.01 and 3 steps.
    parser.add_argument("--source", default="rlcf-tune:lr=0.03+steps=10",
                        help="label source: a method variant (rlcf-tune:lr=0.03+steps=10, mllm) or 'truth'")
    parser.add_argument("--mllm", default=None,
                        help="MLLM for an mllm source (a TTA_MLLM value; default world-mllm)")
    parser.add_argument("--sizes", default="100,300,1000", help="N values (nested subsets)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="fine-tuning hyperparameter for the curve, e.g. --param lr=1e-4")
    parser.add_argument("--variants", action="append", metavar="K=V+K=V",
                        help="extra hyperparameter variants, run at the largest N (repeatable)")
    parser.add_argument("--eval-per-class", type=int, default=8,
                        help="range-B images per class per domain (8: 200 per domain)")
    parser.add_argument("--fresh-eval", action="store_true",
                        help="evaluate on range C (test seeds + 400 000) instead of the accuracy "
                             "bench's range B: for hyperparameters chosen by looking at range B")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="train only on labels whose score is at least this")
    parser.add_argument("--labels-cache", metavar="FILE",
                        help="reuse the label source's output from FILE (written if absent)")
    parser.add_argument("--store", help="model store to write the versions to (default: a temp dir)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=command("bench.finetune", "run_finetune_bench"))
    add_model_args(parser)
