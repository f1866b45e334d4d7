"""Which concurrent jobs may be tuned together as one episode set (``adapters.prompt_tuning``):
the same model version and request (method, labels, templates, options, top_k); only seeds may
differ. Requests are in their normalised form, so equivalent ones (options left to their
defaults, or spelled out; a preset named, or its values) group together."""

from __future__ import annotations

import json
from typing import TypeVar

from service.queue.consumer import StartedJob

T = TypeVar("T")


def episode_key(job: StartedJob) -> str:
    request = {name: value for name, value in job.spec.request.items() if name != "seed"}
    return json.dumps([job.spec.model, request], sort_keys=True)


def episode_groups(jobs: list[tuple[T, StartedJob]]) -> list[list[tuple[T, StartedJob]]]:
    """Jobs grouped by ``episode_key``, groups in order of their first job, jobs in order."""
    groups: dict[str, list[tuple[T, StartedJob]]] = {}
    for entry in jobs:
        groups.setdefault(episode_key(entry[1]), []).append(entry)
    return list(groups.values())
