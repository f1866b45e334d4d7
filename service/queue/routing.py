"""Capability routing: which jobs stream a job goes to, and which streams a worker reads.

A job is appended to the stream of its *route*: the method, pinned to a policy model when the
request names one (``rlcf@ViT-B-16:openai``). A worker reads only the routes it can serve (the
methods its models allow, unpinned and pinned to its own model), so a job never reaches a worker
that would have to fail it; the API refuses at submission what no live worker serves.
Label-set preparation needs only the policy CLIP: any worker takes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from service.queue.schemas import JobSpec

ANY_WORKER = "any"


def route(method: str, model: str | None) -> str:
    return f"{method}@{model}" if model else method


def route_of(spec: JobSpec) -> str:
    if spec.kind == "prepare_label_set":
        return ANY_WORKER
    return route(spec.method, spec.model)


def worker_routes(methods: Iterable[str], model: str) -> list[str]:
    methods = list(methods)
    return [*methods, *(route(m, model) for m in methods), ANY_WORKER]


def serves(worker: Mapping[str, Any], method: str, model: str | None) -> bool:
    """Whether a live worker (its heartbeat info) can run ``method`` on ``model``."""
    return method in worker.get("methods", ()) and (model is None or worker.get("model") == model)
