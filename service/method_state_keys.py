"""Redis key names of online method state (TDA's caches); torch-free, shared by the worker's
store (``service.worker.method_state``) and the API's reset route.

A group (``adapters.state_store``: method + tenant + label set) is one hash, field per model
and label list, plus a sorted set of the update ids already applied (job id / image index,
scored by time, trimmed after ``APPLIED_TTL_MS``).
"""

from __future__ import annotations

APPLIED_TTL_MS = 7 * 24 * 3600 * 1000
"""A job redelivered later than this after its update could apply it again; jobs expire sooner."""


def state_key(prefix: str, group: str) -> str:
    return f"{prefix}:method-state:{group}"


def applied_key(prefix: str, group: str) -> str:
    return f"{prefix}:method-state:{group}:applied"


def index_key(prefix: str, owner: str) -> str:
    """Sorted set of one key's groups by their last update (its quota: the oldest go first)."""
    return f"{prefix}:method-state-index:{owner}"
