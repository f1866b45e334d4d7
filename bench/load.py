"""``tta bench load``: a bounded load against the service over loopback HTTP.

Sends ``/v1/classify`` requests from ``--concurrency`` clients for ``--duration`` seconds and
prints throughput, end-to-end p50/p99 and the service overhead (end-to-end minus the worker's
compute time for the image, as the result's metrics report it). With ``--raw`` (default) it
first measures the worker's raw batched zero-shot throughput in this process, on the same
model, and prints the end-to-end / raw ratio. Without ``--server`` it starts ``tta serve``
(private Redis, one worker) on a free port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx

from bench.lean_http import LeanClient
from service.client import parse_sse
from service.settings import get_settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def scene_png(seed: int) -> bytes:
    from world.render import render

    buffer = io.BytesIO()
    render("v2", seed % 25, 2_000_000 + seed, 64).image.save(buffer, format="PNG")
    return buffer.getvalue()


class Server(NamedTuple):
    url: str
    pid: int
    """The server's first process (its others are its descendants)."""


@contextmanager
def spawned_server(workers: int, **settings: str) -> Iterator[Server]:
    """``tta serve`` on a free port with a data folder of its own (and these TTA_ settings)."""
    from service.redis_server import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "TTA_DATA_DIR": data, "TTA_WORKER_METRICS_PORT": "0", **settings}
        env.pop("TTA_REDIS_URL", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli.main", "serve", "--port", str(port),
             "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError("tta serve exited during start-up")
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise RuntimeError("tta serve did not become ready within 180 s")
            yield Server(url, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def raw_batched_throughput(batch: int, seconds: float) -> dict[str, float]:
    """Images per second of the zero-shot forward pass alone, in batches of ``batch``."""
    from PIL import Image

    from adapters.engine import BatchItem, Engine, load_models
    from contract.request import normalize
    from world.glyphs import CLASS_NAMES

    settings = get_settings()
    engine = Engine(load_models(settings.model, None, device=settings.device))
    images = [Image.open(io.BytesIO(scene_png(i))).convert("RGB") for i in range(batch)]
    request = normalize("zeroshot", CLASS_NAMES, top_k=5)
    items = [BatchItem(request, image) for image in images]
    engine.run_zeroshot_batch(items)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.run_zeroshot_batch(items)
        done += batch
    elapsed = time.perf_counter() - start
    return {"batch": batch, "images_per_s": done / elapsed}


BODIES = 64
"""Distinct request bodies, encoded before the clock starts and sent in turn."""


def encoded_bodies(method: str, options: dict[str, Any], count: int = BODIES) -> list[tuple[bytes, str]]:
    """Multipart bodies (one world scene each) and their content type. Encoded up front: a
    scene's rendering and encoding cost the load generator ~2 ms of CPU per request, which on
    these 2 cores was taken from the servers under test."""
    from world.glyphs import CLASS_NAMES

    data = {"labels": list(CLASS_NAMES), "method": method, "options": json.dumps(options)}
    bodies = []
    for n in range(count):
        # One write per request: httpx's async client streams a multipart body part by part,
        # which added ~7 ms per request here (a cost of the client, not the service).
        request = httpx.Request("POST", "/v1/classify", files=[("image", ("scene.png", scene_png(n)))],
                                data=data)
        bodies.append((request.read(), request.headers["Content-Type"]))
    return bodies


CLIENTS = ("lean", "httpx")
"""The load generator's HTTP clients: ``lean`` (``bench.lean_http``, the default) and
``httpx``, kept to show what a heavier client adds to every figure."""


def simulated_client(url: str, headers: dict[str, str] | None = None, timeout_s: float = 120,
                     client: str = "lean") -> LeanClient | httpx.AsyncClient:
    """The HTTP client of one simulated client of a load bench: one connection, a request at
    a time. (One httpx client shared by 32 clients spent ~7 ms of CPU per request in its
    connection pool, ~3 ms at 8: on these 2 cores that was taken from the servers measured.)"""
    if client == "httpx":
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout_s,
                                 limits=httpx.Limits(max_connections=1))
    if client != "lean":
        raise ValueError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
    return LeanClient(url, headers, timeout_s)


async def _client_loop(url: str, headers: dict[str, str], bodies: list[tuple[bytes, str]],
                       stop_at: float, seed: int, out: list[dict[str, Any]], client_kind: str) -> None:
    n = seed
    async with simulated_client(url, headers, client=client_kind) as client:
        while time.monotonic() < stop_at:
            body, content_type = bodies[n % len(bodies)]
            n += 1
            sent_ms, start = time.time() * 1000, time.perf_counter()
            response = await client.post("/v1/classify", content=body, headers={"Content-Type": content_type})
            e2e_ms = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                out.append({"error": float(response.status_code)})
                continue
            answer = response.json()
            metrics = answer["results"][0]["metrics"]
            out.append({"job_id": answer["job_id"], "sent_ms": sent_ms, "answered_ms": sent_ms + e2e_ms,
                        "e2e_ms": e2e_ms, "compute_ms": float(metrics["compute_ms"]),
                        "server_ms": server_timing_ms(response.headers.get("server-timing", "")),
                        "queue_ms": float(metrics["queue_ms"]),
                        "batch_size": float(metrics.get("batch_size", 1))})


def server_timing_ms(header: str) -> float:
    """The API's own time for a request (``Server-Timing: app;dur=<ms>``); NaN if absent."""
    for metric in header.split(","):
        name, *params = metric.strip().split(";")
        if name == "app":
            for param in params:
                if param.startswith("dur="):
                    return float(param[4:])
    return float("nan")


async def run_load(url: str, method: str, options: dict[str, Any], concurrency: int,
                   duration_s: float, api_key: str | None,
                   breakdown: bool = False, client_kind: str = "lean") -> tuple[list[dict[str, Any]], float]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    bodies = encoded_bodies(method, options)
    await _client_loop(url, headers, bodies, time.monotonic() + 1.0, 0, [], client_kind)  # warm-up
    out: list[dict[str, Any]] = []
    start = time.perf_counter()
    stop_at = time.monotonic() + duration_s
    await asyncio.gather(*(_client_loop(url, headers, bodies, stop_at, i * BODIES // concurrency, out,
                                        client_kind) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    if breakdown:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            await add_stages(client, [s for s in out if "job_id" in s][-BREAKDOWN_SAMPLES:])
    return out, elapsed


BREAKDOWN_SAMPLES = 200
STAGES = ("request_to_queued", "queued_to_started", "started_to_result", "result_to_answer")


async def add_stages(client: httpx.AsyncClient, samples: list[dict[str, Any]]) -> None:
    """Where each request's time went, from its job's event ids (Redis's clock, in ms) and the
    client's clock: valid where both are this machine's (a server spawned here)."""
    for sample in samples:
        response = await client.get(f"/v1/jobs/{sample['job_id']}/events")
        first: dict[str, float] = {}
        for event in parse_sse(iter(response.text.splitlines())):
            first.setdefault(event.event, float(event.id.split("-")[0]))
        if {"queued", "started", "result"} <= first.keys():
            sample.update(request_to_queued=first["queued"] - sample["sent_ms"],
                          queued_to_started=first["started"] - first["queued"],
                          started_to_result=first["result"] - first["started"],
                          result_to_answer=sample["answered_ms"] - first["result"])


def run_bench_load(args: argparse.Namespace) -> int:
    from service.cli.common import parse_option_flags

    options = parse_option_flags(args.option)
    raw = raw_batched_throughput(get_settings().batch_max_images, args.raw_seconds) \
        if args.raw and args.method == "zeroshot" else None
    if args.server:
        samples, elapsed = asyncio.run(run_load(args.server, args.method, options, args.concurrency,
                                                args.duration, args.api_key or os.environ.get("TTA_API_KEY"),
                                                args.breakdown, args.client))
    else:
        with spawned_server(args.workers) as server:
            samples, elapsed = asyncio.run(run_load(server.url, args.method, options, args.concurrency,
                                                    args.duration, None, True, args.client))
    ok = [s for s in samples if "e2e_ms" in s]
    if not ok:
        print("error: no request succeeded", file=sys.stderr)
        return 1
    e2e = [s["e2e_ms"] for s in ok]
    overhead = [s["e2e_ms"] - s["compute_ms"] for s in ok]
    report: dict[str, Any] = {
        "method": args.method, "concurrency": args.concurrency, "duration_s": round(elapsed, 1),
        "requests": len(samples), "errors": len(samples) - len(ok),
        "throughput_per_s": round(len(ok) / elapsed, 1),
        "e2e_ms": {"p50": round(percentile(e2e, 50), 1), "p99": round(percentile(e2e, 99), 1)},
        "compute_ms_p50": round(statistics.median(s["compute_ms"] for s in ok), 1),
        "queue_ms_p50": round(statistics.median(s["queue_ms"] for s in ok), 1),
        "overhead_ms": {"p50": round(percentile(overhead, 50), 1), "p99": round(percentile(overhead, 99), 1)},
        "mean_batch_size": round(statistics.mean(s["batch_size"] for s in ok), 2),
        "client": args.client,
    }
    timed = [s for s in ok if s["server_ms"] == s["server_ms"]]  # (not NaN: the API sent the header)
    if timed:  # the same overhead as the API sees it, and what the client and loopback add
        server_overhead = [s["server_ms"] - s["compute_ms"] for s in timed]
        report["server_overhead_ms"] = {"p50": round(percentile(server_overhead, 50), 1),
                                        "p99": round(percentile(server_overhead, 99), 1)}
        report["client_and_network_ms_p50"] = round(statistics.median(s["e2e_ms"] - s["server_ms"]
                                                                      for s in timed), 1)
    staged = [s for s in ok if STAGES[0] in s]
    if staged:  # medians of each stage, and of compute for the same requests
        report["stages_ms_p50"] = {stage: round(statistics.median(s[stage] for s in staged), 1)
                                   for stage in (*STAGES, "compute_ms")}
        report["stages_samples"] = len(staged)
    if raw:
        report["raw_batched_images_per_s"] = round(raw["images_per_s"], 1)
        report["e2e_over_raw"] = round(report["throughput_per_s"] / raw["images_per_s"], 3)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.method}: {report['requests']} requests ({report['errors']} errors) from "
          f"{args.concurrency} clients ({args.client} HTTP client) in {report['duration_s']} s")
    print(f"  throughput      {report['throughput_per_s']} images/s")
    print(f"  end to end      p50 {report['e2e_ms']['p50']} ms   p99 {report['e2e_ms']['p99']} ms")
    print(f"  worker compute  p50 {report['compute_ms_p50']} ms   "
          f"(queue wait p50 {report['queue_ms_p50']} ms, mean batch {report['mean_batch_size']})")
    print(f"  overhead        p50 {report['overhead_ms']['p50']} ms   p99 {report['overhead_ms']['p99']} ms"
          "   (end to end minus compute)")
    if timed:
        print(f"    in the API    p50 {report['server_overhead_ms']['p50']} ms   "
              f"p99 {report['server_overhead_ms']['p99']} ms   (Server-Timing minus compute; the "
              f"client and loopback add p50 {report['client_and_network_ms_p50']} ms)")
    if staged:
        stages = report["stages_ms_p50"]
        print(f"  where it goes   (p50 of the last {len(staged)} requests; event ids have 1 ms steps)")
        print(f"    request -> queued {stages['request_to_queued']} ms, queued -> started "
              f"{stages['queued_to_started']} ms, started -> result {stages['started_to_result']} ms "
              f"(compute {stages['compute_ms']} ms), result -> answer {stages['result_to_answer']} ms")
    if raw:
        print(f"  raw batched zero-shot (batch {raw['batch']}, in-process): "
              f"{report['raw_batched_images_per_s']} images/s; end to end / raw = {report['e2e_over_raw']}")
    return 0
