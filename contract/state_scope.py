"""The scope of what a method keeps across requests (TDA's caches): one tenant and one label
set, named or given inline. The worker's state store and the API's reset route both name a
group by it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def state_key_for(owner: str, label_set: str | None, labels: Sequence[str]) -> str:
    """Scope of cross-request method state: the tenant and its label set (by name, or by the
    hash of the labels for requests with inline labels)."""
    return f"{owner}|{label_set or labels_digest(labels)}"


def group_owner(group: str) -> str:
    """The tenant whose state a group (``method + ":" + state_key_for(...)``) is."""
    return group.partition(":")[2].partition("|")[0]


def labels_digest(labels: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(labels).encode()).hexdigest()[:16]
