"""``tta bench peers``: the service against what a user would otherwise run, on the same models,
the same JSON payload and the same load generator: a plain in-process FastAPI endpoint (the
no-queue floor) and LitServe with dynamic batching (``bench.peer_servers``). Prints
throughput and end-to-end p50/p99 per server, method and concurrency, and the ratios to the
service, and the CPU time each request cost the server's processes and the load generator;
``--json FILE`` keeps them."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from bench.lean_http import LeanHTTPError
from bench.load import Server, percentile, scene_png, simulated_client, spawned_server
from bench.process_cpu import CpuMeter

PEERS = ("service", "plain", "litserve")
PATHS = {"service": "/v1/classify", "plain": "/classify", "litserve": "/predict"}


@contextmanager
def peer_server(kind: str, method: str) -> Iterator[Server]:
    if kind == "service":
        with spawned_server(1) as server:
            yield server
        return
    from service.redis_server import free_port

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"peer-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "bench.peer_servers", kind, "--port", str(port),
                                "--method", method], env=dict(os.environ), stdout=log, stderr=log,
                               start_new_session=True)  # its own group: LitServe forks workers
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_until_answering(url, PATHS[kind], process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log ({log.name}) ends: "
                               f"{Path(log.name).read_text()[-2000:]}") from exc
        yield Server(url, process.pid)
    finally:
        log.close()
        # The whole group: LitServe's inference workers outlive a signalled parent, and left
        # running they took a third of a core from every later measurement.
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _wait_until_answering(url: str, path: str, process: subprocess.Popen[bytes]) -> None:
    body = request_body(0, "zeroshot")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the peer server at {url} exited during start-up")
        try:
            if httpx.post(url + path, json=body, timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the peer server at {url} did not answer within 180 s")


def request_body(seed: int, method: str) -> dict[str, Any]:
    from world.glyphs import CLASS_NAMES

    return {"images": [base64.b64encode(scene_png(seed)).decode()], "labels": list(CLASS_NAMES),
            "method": method}


async def _load(server: Server, path: str, method: str, concurrency: int, duration_s: float,
                client_kind: str = "lean") -> dict[str, Any]:
    url = server.url
    bodies = [json.dumps(request_body(seed, method)).encode() for seed in range(64)]  # (encoded once)
    latencies: list[float] = []
    errors = 0

    async def client_loop(offset: int, stop_at: float, record: bool) -> None:
        nonlocal errors
        n = offset
        async with simulated_client(url, timeout_s=300, client=client_kind) as client:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                try:
                    response = await client.post(path, content=bodies[n % len(bodies)],
                                                 headers={"Content-Type": "application/json"})
                    ok = response.status_code == 200
                except (httpx.TransportError, LeanHTTPError):  # a server that drops connections: counted
                    ok = False
                if record:
                    if ok:
                        latencies.append((time.perf_counter() - start) * 1000)
                    else:
                        errors += 1
                n += 1

    warm_up_until = time.monotonic() + 1.0
    await asyncio.gather(*(client_loop(i, warm_up_until, False) for i in range(concurrency)))
    meter = CpuMeter(server.pid)
    meter.start()
    client_before = _own_cpu_ms()
    start = time.perf_counter()
    stop_at = time.monotonic() + duration_s
    await asyncio.gather(*(client_loop(i, stop_at, True) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    client_ms, server_ms = _own_cpu_ms() - client_before, meter.stop()
    answered = max(1, len(latencies) + errors)
    return {"throughput_per_s": round(len(latencies) / elapsed, 1), "errors": errors,
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "server_cpu_ms_per_request": round(sum(server_ms.values()) / answered, 2),
            "server_cpu_ms_per_request_by_process": {name: round(ms / answered, 2)
                                                     for name, ms in sorted(server_ms.items())},
            "client_cpu_ms_per_request": round(client_ms / answered, 2)}


def _own_cpu_ms() -> float:
    """This process's user + system CPU time (the load generator's), in ms."""
    times = os.times()
    return (times.user + times.system) * 1000


def run_bench_peers(args: argparse.Namespace) -> int:
    methods = args.methods.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    for peer in args.peers.split(","):
        for method in methods:
            with peer_server(peer, method) as server:
                for concurrency in levels:
                    figures = asyncio.run(_load(server, PATHS[peer], method, concurrency, args.duration,
                                                args.client))
                    rows.append({"server": peer, "method": method, "concurrency": concurrency, **figures})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    by_key = {(r["method"], r["concurrency"]): r for r in rows if r["server"] == "service"}
    for row in rows:
        service = by_key.get((row["method"], row["concurrency"]))
        if service and service["throughput_per_s"]:
            row["throughput_vs_service"] = round(row["throughput_per_s"] / service["throughput_per_s"], 2)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"duration_s": args.duration, "client": args.client, "rows": rows}, out, indent=2)
    print("| server | method | concurrency | images/s | p50 ms | p99 ms | throughput / service "
          "| server CPU ms / request | client CPU ms / request |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['method']} | {r['concurrency']} | {r['throughput_per_s']} "
              f"| {r['p50_ms']} | {r['p99_ms']} | {r.get('throughput_vs_service', '')} "
              f"| {r['server_cpu_ms_per_request']} | {r['client_cpu_ms_per_request']} |")
    return 0
