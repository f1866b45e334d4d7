"""Which concurrent jobs may be tuned together as one episode set (``adapters.prompt_tuning``):
the same method, model version, labels, templates, options and top_k; only seeds may differ."""

from __future__ import annotations

import json
from typing import TypeVar

from service.queue.consumer import StartedJob

T = TypeVar("T")


def episode_key(job: StartedJob) -> str:
    spec = job.spec
    return json.dumps([spec.method, spec.model, spec.labels, spec.templates, spec.options,
                       spec.top_k], sort_keys=True)


def episode_groups(jobs: list[tuple[T, StartedJob]]) -> list[list[tuple[T, StartedJob]]]:
    """Jobs grouped by ``episode_key``, groups in order of their first job, jobs in order."""
    groups: dict[str, list[tuple[T, StartedJob]]] = {}
    for entry in jobs:
        groups.setdefault(episode_key(entry[1]), []).append(entry)
    return list(groups.values())
