"""``tta bench failover``: what a Redis failover costs, live on loopback. Per run: a master, a
replica and three sentinels (``bench.redis_ha``), ``tta serve`` (API and a worker) reaching
Redis through the sentinels; a client submits zero-shot and TPT jobs every 50 ms; the master
is SIGKILLed; the sentinels promote the replica. Reported: jobs accepted (202), how each ended,
how many were lost (unknown to the new master, or unfinished at the bound), what the client
saw instead of a 202, and over how long."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import tables
from bench.load import scene_png, spawned_server
from bench.redis_ha import ReplicatedRedis
from service.cli.common import print_table

SUBMIT_EVERY_S = 0.05
LABELS = ["red ball", "blue car", "green tree", "yellow kettle", "black cat"]
FINISHED = ("done", "failed", "dead")


@dataclass
class Submission:
    at: float
    status: int
    """HTTP status; 0: no response (the connection failed)."""
    job_id: str | None


def run_failover(root: Path, *, load_before_s: float = 2.0, load_after_s: float = 2.0,
                 bound_s: float = 120.0) -> dict[str, Any]:
    """One failover under load; the figures of one run."""
    ha = ReplicatedRedis(root).start()
    try:
        with spawned_server(1, TTA_REDIS_SENTINELS=ha.sentinel_setting, TTA_REDIS_SENTINEL_MASTER="tta",
                            TTA_REDIS_WAIT_TIMEOUT_MS="1000", TTA_REDIS_PREFIX="failover") as server:
            submissions: list[Submission] = []
            stop = threading.Event()
            sender = threading.Thread(target=_submit_until, args=(server.url, stop, submissions), daemon=True)
            sender.start()
            time.sleep(load_before_s)
            killed_at = ha.kill_master()
            promoted_at = ha.wait_promoted()
            while not any(s.status == 202 and s.at > promoted_at for s in submissions):
                time.sleep(0.05)
            time.sleep(load_after_s)
            stop.set()
            sender.join()
            states, ended_at = _final_states(server.url, submissions, bound_s)
    finally:
        ha.stop()
    refused = [s for s in submissions if s.status != 202]
    accepted = [s for s in submissions if s.status == 202]
    window = max(s.at for s in refused) - min(s.at for s in refused) if refused else 0.0
    return {
        "accepted": len(accepted),
        "done": sum(state == "done" for state in states.values()),
        "failed": sum(state in ("failed", "dead") for state in states.values()),
        "lost": sum(state not in FINISHED for state in states.values()),
        "refused": len(refused),
        "refused_statuses": sorted({s.status for s in refused}),
        "error_window_s": round(window, 2),
        "promoted_after_s": round(promoted_at - killed_at, 2),
        "all_ended_after_kill_s": round(ended_at - killed_at, 2),
    }


def _submit_until(url: str, stop: threading.Event, submissions: list[Submission]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        seed = 0
        while not stop.is_set():
            seed += 1
            method = ("zeroshot", "tpt")[seed % 2]
            options = '{"n_views": 8}' if method == "tpt" else "{}"
            try:
                response = client.post("/v1/jobs", files=[("image", (f"{seed}.png", scene_png(seed)))],
                                       data={"labels": LABELS, "method": method, "options": options})
                job_id = response.json().get("job_id") if response.status_code == 202 else None
                submissions.append(Submission(time.monotonic(), response.status_code, job_id))
            except httpx.HTTPError:
                submissions.append(Submission(time.monotonic(), 0, None))
            time.sleep(SUBMIT_EVERY_S)


def _final_states(url: str, submissions: list[Submission], bound_s: float) -> tuple[dict[str, str], float]:
    """Each accepted job's status once all have ended or the bound passed (a job the new master
    does not know is "missing"), and when that was."""
    states: dict[str, str] = {s.job_id: "queued" for s in submissions if s.job_id}
    deadline = time.monotonic() + bound_s
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            for job_id, state in states.items():
                if state in FINISHED:
                    continue
                try:
                    response = client.get(f"/v1/jobs/{job_id}")
                except httpx.HTTPError:
                    continue
                if response.status_code == 404:
                    states[job_id] = "missing"
                elif response.status_code == 200:
                    states[job_id] = response.json()["status"]
            if all(state in FINISHED for state in states.values()) or time.monotonic() > deadline:
                return states, time.monotonic()
            time.sleep(0.2)


def run_bench_failover(args: argparse.Namespace) -> int:
    runs = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory() as root:
            runs.append(run_failover(Path(root)))
        print(f"run {index + 1}/{args.runs}: {runs[-1]}", flush=True)
    summary = {"runs": runs, "lost": sum(r["lost"] for r in runs),
               "median_error_window_s": statistics.median(r["error_window_s"] for r in runs)}
    print_table(*tables.failover(summary))
    print(f"lost in all runs: {summary['lost']}; median client-visible error window "
          f"{summary['median_error_window_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["lost"] == 0 else 1
