"""The API's Prometheus metrics: HTTP traffic by route, and the queue as Redis sees it
(refreshed on each scrape, so every API replica reports the same queue)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from service.queue.drift import DriftLimits, scores_by_owner
from service.queue.producer import Producer

HTTP_REQUESTS = Counter("tta_http_requests_total", "HTTP requests by route, method and status",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "tta_http_request_duration_seconds", "HTTP request latency by route (streams: until closed)",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
JOBS_SUBMITTED = Counter("tta_jobs_submitted_total", "Jobs accepted into the queue, by method",
                         ["method"])
QUEUE_DEPTH = Gauge("tta_queue_depth", "Unfinished jobs (waiting or running)")
QUEUE_OLDEST = Gauge("tta_queue_oldest_age_seconds", "Age of the oldest unfinished job")
DEAD_LETTER_DEPTH = Gauge("tta_dead_letter_depth", "Entries in the dead-letter stream")
WORKERS_LIVE = Gauge("tta_workers_live", "Workers with a fresh heartbeat")
DRIFT_SCORE = Gauge("tta_drift_score", "Highest input-drift score of a key's label sets (a series per "
                    "key; GET /v1/drift shows each label set)", ["tenant"])


class HTTPMetricsMiddleware:
    """Counts every request under its route template (``/v1/jobs/{job_id}``), not its path, so
    job ids do not explode the label space, and tells the caller the server's share of its
    latency in a ``Server-Timing: app;dur=<ms>`` header: from the request's arrival at the app
    to its response headers (for a stream, its first byte). A client's end-to-end time minus
    this is the network and the client itself; ``tta bench load`` reports both."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracking_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed_ms = (time.perf_counter() - start) * 1000
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"server-timing", b"app;dur=%.2f" % elapsed_ms)]}
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_LATENCY.labels(route, scope["method"]).observe(time.perf_counter() - start)


async def render(producer: Producer, drift: DriftLimits, tenants: Sequence[str]) -> tuple[bytes, str]:
    stats = await producer.stats()
    QUEUE_DEPTH.set(stats.depth)
    QUEUE_OLDEST.set(stats.oldest_age_s)
    DEAD_LETTER_DEPTH.set(stats.dead_letters)
    WORKERS_LIVE.set(len(stats.workers))
    scores = await scores_by_owner(producer.client, producer.keys, tenants, drift)
    DRIFT_SCORE.clear()  # (a key whose label sets all expired leaves no series behind)
    for owner, score in scores.items():
        DRIFT_SCORE.labels(owner).set(score)
    return generate_latest(), CONTENT_TYPE_LATEST
