"""``tta bench hostile``: what the largest inputs the limits allow cost a live service
(memory, time, a neighbour's latency).

Starts ``tta serve`` (one worker, the bundled world MLLM) and, while a well-behaved client keeps
classifying zero-shot: sends requests of 16 full 6000x6000 JPEGs; creates the largest label set
the limits allow (TTA_MAX_EXEMPLARS_PER_LABEL_SET exemplars declaring 6000x6000, as many as the
request's bytes allow), waits for its preparation, runs mllm on it with the most candidates and
draws; runs a long fine-tune. Reports the neighbour's p50/p99 per phase, and the peak resident
memory of the worker and the API (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.load import percentile, scene_png, spawned_server


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


class Neighbour:
    """A well-behaved client classifying zero-shot without pause; its latencies per phase."""

    def __init__(self, client: httpx.AsyncClient, labels: list[str]) -> None:
        self.client, self.labels = client, labels
        self.phases: dict[str, list[float]] = {}
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, phase: str) -> None:
        await self.stop()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(_well_behaved(self.client, self.labels, self._stop,
                                                       self.phases.setdefault(phase, [])))

    async def stop(self) -> None:
        if self._task is not None and self._stop is not None:
            self._stop.set()
            await self._task
            self._task = None

    def summary(self) -> dict[str, dict[str, float]]:
        return {phase: {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
                for phase, ms in self.phases.items() if ms}


def exemplar_jpeg(seed: int, side: int = 512) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((side, side), 8 + seed % 50).convert("RGB").save(buffer, format="JPEG", quality=20)
    return buffer.getvalue()


def largest_label_set(classes: int, per_class: int,
                      image: Callable[[int], bytes]) -> tuple[list[str], list[Any]]:
    """Labels and exemplar files of a label set at the deployment's limits."""
    labels = [f"class {i}" for i in range(classes)]
    files = [(f"exemplar:{label}", (f"{label}-{k}.jpg", image(i * per_class + k)))
             for i, label in enumerate(labels) for k in range(per_class)]
    return labels, files


async def wait_done(client: httpx.AsyncClient, job_url: str, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await client.get(job_url)).json()
        if job["status"] in ("done", "failed", "dead"):
            return job
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{job_url} did not finish within {timeout_s} s")


async def _scenario(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from service.settings import Settings
    from world.glyphs import CLASS_NAMES

    limits = Settings()
    labels = list(CLASS_NAMES)
    jpeg = big_jpeg()
    report: dict[str, Any] = {"jpeg_bytes": len(jpeg)}
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        neighbour = Neighbour(client, labels)
        await neighbour.start("calm")
        await asyncio.sleep(args.calm_s)

        # 1. Requests of 16 images of 36 megapixels each.
        await neighbour.start("big images")
        hostile_ms, statuses = [], []
        for _ in range(args.requests):
            start = time.perf_counter()
            response = await client.post("/v1/classify", data={"labels": labels},
                                         files=[("image", (f"{i}.jpg", jpeg)) for i in range(16)])
            hostile_ms.append((time.perf_counter() - start) * 1000)
            statuses.append(response.status_code)
        report["big_images"] = {"median_ms": statistics.median(hostile_ms), "statuses": statuses}

        # 2. The largest label set the limits allow: as many exemplars as a set may hold, each
        # as large as the worker uses them (512 x 512, 0.8 MB decoded), a little noise apiece
        # so no two are alike; its preparation; mllm on it with the most candidates and draws.
        per_set = limits.max_exemplars_per_label_set
        set_labels, files = largest_label_set(per_set // 16, 16, exemplar_jpeg)
        await neighbour.start("label-set preparation")
        start = time.perf_counter()
        created = await client.post("/v1/label-sets", files=files,
                                    data={"name": "largest", "labels": ",".join(set_labels)})
        api_ms = (time.perf_counter() - start) * 1000
        preparation = created.json().get("prepare_job_id") if created.status_code == 201 else None
        prepared = await wait_done(client, f"/v1/jobs/{preparation}") if preparation else {}
        await neighbour.start("mllm on the largest set")
        mllm_statuses = []
        for n in range(args.mllm_requests):
            response = await client.post("/v1/classify", files=[("image", ("q.png", scene_png(n)))],
                                         data={"label_set": "largest", "method": "mllm",
                                               "options": json.dumps({"n_candidates": 20, "draws": 10})})
            mllm_statuses.append(response.status_code)
        report["largest_label_set"] = {
            "exemplars": len(files), "classes": len(set_labels),
            "request_bytes": sum(len(f[1][1]) for f in files),
            "status": created.status_code, "api_ms": api_ms,
            "preparation": prepared.get("status"), "mllm_statuses": mllm_statuses}

        # 3. A fine-tune long enough to span the measurement.
        await neighbour.stop()
        await client.post("/v1/label-sets", json={"name": "tuned", "labels": labels})
        await client.put("/v1/label-sets/tuned/retention", json={"enabled": True})
        for n in range(20):
            await client.post("/v1/classify", files=[("image", ("r.png", scene_png(100 + n)))],
                              data={"label_set": "tuned", "method": "tpt"})
        response = await client.post("/v1/finetunes", json={
            "label_set": "tuned", "hyperparameters": {"epochs": 1000, "batch_size": 1}})
        if response.status_code != 202:
            raise RuntimeError(f"the fine-tune was refused: {response.text}")
        started = response.json()
        while (await client.get(started["job_url"])).json()["status"] != "running":
            await asyncio.sleep(0.1)
        await neighbour.start("fine-tune")
        await asyncio.sleep(args.finetune_s)
        await neighbour.stop()
        status = (await client.get(started["job_url"])).json()["status"]
        await client.delete(started["job_url"])
        report["finetune"] = {"status_while_measured": status}
    report["neighbour"] = neighbour.summary()
    return report


def run_bench_hostile(args: argparse.Namespace) -> int:
    with spawned_server(1, TTA_MLLM="world-mllm") as server:
        url = server.url
        worker_id = httpx.get(f"{url}/v1/models", timeout=5).json()["workers"][0]["id"]
        worker_pid = int(worker_id.rsplit("-", 1)[1])
        api_pid = pid_listening(int(url.rsplit(":", 1)[1]))
        before = {"worker": peak_rss_mb(worker_pid), "api": peak_rss_mb(api_pid)}
        report = asyncio.run(_scenario(url, args))
        time.sleep(2)  # the worker is done with the last jobs
        report["memory_before"] = before
        report["memory_after"] = {"worker": peak_rss_mb(worker_pid), "api": peak_rss_mb(api_pid)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    big, largest = report["big_images"], report["largest_label_set"]
    print(f"{args.requests} requests of 16 x 6000x6000 JPEG ({report['jpeg_bytes']} bytes each): "
          f"statuses {sorted(set(big['statuses']))}, median {big['median_ms']:.0f} ms")
    print(f"largest label set: {largest['exemplars']} exemplars in {largest['classes']} classes, "
          f"{largest['status']} in {largest['api_ms']:.0f} ms of API time; preparation "
          f"{largest['preparation']}; mllm (20 candidates x 10 draws) statuses "
          f"{sorted(set(largest['mllm_statuses']))}")
    print("well-behaved zero-shot client, by phase:")
    for phase, row in report["neighbour"].items():
        print(f"  {phase:<26} n={row['n']:<5} p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms")
    for name in ("worker", "api"):
        b, a = report["memory_before"][name], report["memory_after"][name]
        print(f"{name}: RSS {b['rss_mb']:.0f} -> {a['rss_mb']:.0f} MB, peak {b['peak_mb']:.0f} -> "
              f"{a['peak_mb']:.0f} MB")
    return 0
