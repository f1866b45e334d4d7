"""Capability routing: which jobs stream a job goes to, and which streams a worker reads.

A job is appended to the stream of its *route*: the method, pinned to a policy model when the
request names one (``rlcf@ViT-B-16:openai``). A worker reads only the routes it can serve (the
methods its models allow, unpinned and pinned to its own model), so a job never reaches a worker
that would have to fail it; the API refuses at submission what no live worker serves.
Label-set preparation needs only the policy CLIP: any worker takes it, and so does a fine-tune
(it trains the policy of whichever worker takes it). A fine-tuned version (``NAME@VERSION``)
routes like its base model: every worker holding the base loads versions from the shared store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contract.names import split_version
from service.queue.schemas import JobSpec

ANY_WORKER = "any"


def base_model(model: str) -> str:
    """The model a version was fine-tuned from (the name itself if it is no version)."""
    try:
        return split_version(model)[0]
    except ValueError:
        return model  # not a valid version: routed as written, so no worker takes it by mistake


def route(method: str, model: str | None) -> str:
    return f"{method}@{base_model(model)}" if model else method


def route_of(spec: JobSpec) -> str:
    if spec.kind in ("prepare_label_set", "finetune"):
        return ANY_WORKER
    return route(spec.method, spec.model)


def worker_routes(methods: Iterable[str], model: str) -> list[str]:
    methods = list(methods)
    return [*methods, *(route(m, model) for m in methods), ANY_WORKER]


def serves(worker: Mapping[str, Any], method: str, model: str | None) -> bool:
    """Whether a live worker (its heartbeat info) can run ``method`` on ``model``."""
    return method in worker.get("methods", ()) and (model is None or worker.get("model") == base_model(model))
