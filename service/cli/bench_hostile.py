"""``tta bench hostile``: what hostile inputs cost a live service (memory, time, neighbours).

Starts ``tta serve`` (one worker) and sends, while a well-behaved client keeps classifying:
requests of 16 full 6000x6000 JPEGs (36 megapixels each; a 2 KB file can claim as much in its
header), and label sets with exemplars of that size. Reports the peak resident memory of the
worker and the API (VmHWM), the hostile requests' latency, and the well-behaved client's
latency before and during the flood. The figures the README quotes come from this command.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from service.cli.bench_load import percentile, scene_png, spawned_server


def big_jpeg(side: int = 6000) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 60)).save(buffer, format="JPEG", quality=30)
    return buffer.getvalue()


def peak_rss_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    return {name: int(fields[key].split()[0]) / 1024 for name, key in (("rss_mb", "VmRSS"),
                                                                     ("peak_mb", "VmHWM"))}


def pid_listening(port: int) -> int:
    """The pid of the process serving ``port`` (the API), from /proc (no psutil needed)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
            inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if fd.readlink().name.removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


async def _well_behaved(client: httpx.AsyncClient, labels: list[str], stop: asyncio.Event,
                        out: list[float]) -> None:
    n = 0
    while not stop.is_set():
        start = time.perf_counter()
        response = await client.post("/v1/classify", files=[("image", ("s.png", scene_png(n)))],
                                     data={"labels": labels})
        if response.status_code == 200:
            out.append((time.perf_counter() - start) * 1000)
        n += 1


async def _scenario(url: str, requests: int, label_sets: int) -> dict[str, Any]:
    from world.glyphs import CLASS_NAMES

    labels = list(CLASS_NAMES)
    jpeg = big_jpeg()
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        baseline: list[float] = []
        stop = asyncio.Event()
        calm = asyncio.create_task(_well_behaved(client, labels, stop, baseline))
        await asyncio.sleep(5)
        stop.set()
        await calm
        during: list[float] = []
        stop = asyncio.Event()
        neighbour = asyncio.create_task(_well_behaved(client, labels, stop, during))
        hostile_ms, statuses = [], []
        for _ in range(requests):
            start = time.perf_counter()
            response = await client.post("/v1/classify", data={"labels": labels},
                                         files=[("image", (f"{i}.jpg", jpeg)) for i in range(16)])
            hostile_ms.append((time.perf_counter() - start) * 1000)
            statuses.append(response.status_code)
        for index in range(label_sets):
            files = [(f"exemplar:{label}", (f"{label}{k}.jpg", jpeg))
                     for label in labels[:8] for k in range(2)]
            response = await client.post("/v1/label-sets", files=files,
                                         data={"name": f"hostile-{index}", "labels": labels})
            statuses.append(response.status_code)
        stop.set()
        await neighbour
    return {"hostile_request_ms_median": statistics.median(hostile_ms), "statuses": statuses,
            "neighbour_p50_ms_before": percentile(baseline, 50),
            "neighbour_p50_ms_during": percentile(during, 50),
            "neighbour_p99_ms_during": percentile(during, 99), "jpeg_bytes": len(jpeg)}


def run_bench_hostile(args: argparse.Namespace) -> int:
    with spawned_server(1) as server:
        url = server.url
        worker_id = httpx.get(f"{url}/v1/models", timeout=5).json()["workers"][0]["id"]
        worker_pid = int(worker_id.rsplit("-", 1)[1])
        api_pid = pid_listening(int(url.rsplit(":", 1)[1]))
        before = {"worker": peak_rss_mb(worker_pid), "api": peak_rss_mb(api_pid)}
        report = asyncio.run(_scenario(url, args.requests, args.label_sets))
        time.sleep(2)  # the worker is done with the last jobs
        report["memory_before"] = before
        report["memory_after"] = {"worker": peak_rss_mb(worker_pid), "api": peak_rss_mb(api_pid)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.requests} requests of 16 x 6000x6000 JPEG ({report['jpeg_bytes']} bytes each), "
          f"{args.label_sets} label sets of 16 such exemplars; statuses {sorted(set(report['statuses']))}")
    print(f"hostile request median {report['hostile_request_ms_median']:.0f} ms")
    print(f"well-behaved zero-shot p50 {report['neighbour_p50_ms_before']:.1f} ms before, "
          f"{report['neighbour_p50_ms_during']:.1f} ms during (p99 {report['neighbour_p99_ms_during']:.1f})")
    for name in ("worker", "api"):
        b, a = report["memory_before"][name], report["memory_after"][name]
        print(f"{name}: RSS {b['rss_mb']:.0f} -> {a['rss_mb']:.0f} MB, peak {b['peak_mb']:.0f} -> "
              f"{a['peak_mb']:.0f} MB")
    return 0
