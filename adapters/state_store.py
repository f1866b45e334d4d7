"""Where methods keep state across requests (TDA's caches), behind a small interface.

State is grouped: a *group* is one method's state for one tenant and label set
(``"tda:" + state_key``); inside it, one *field* per model and label list, so changing the
model or the labels never reads another's cache. A reset drops a whole group.

``update`` applies a change at most once per ``update_id`` (a job id and image index): a
redelivered job finds its id applied and gets the state as it is, unchanged. Changes are pure
functions of the current bytes, so an implementation may retry them (optimistic concurrency).

A group's scope (tenant and label set) is ``contract.state_scope``: the API resets groups by it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

Change = Callable[[bytes | None], bytes]


class StateStore(Protocol):
    def read(self, group: str, field: str) -> bytes | None: ...

    def update(self, group: str, field: str, update_id: str | None,
               change: Change) -> tuple[bytes | None, bool]:
        """Apply ``change`` unless ``update_id`` was applied before (None: always apply).
        Returns (the state after, whether this call changed it)."""
        ...

    def reset(self, group: str) -> bool:
        """Drop the group's state; True if there was any."""
        ...


class InMemoryStateStore:
    """One process's state (CLI, benchmarks, tests): a bounded LRU of groups."""

    def __init__(self, max_groups: int = 64) -> None:
        self.max_groups = max_groups
        self._groups: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._applied: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def read(self, group: str, field: str) -> bytes | None:
        with self._lock:
            return self._groups.get(group, {}).get(field)

    def update(self, group: str, field: str, update_id: str | None,
               change: Change) -> tuple[bytes | None, bool]:
        with self._lock:
            fields = self._groups.setdefault(group, {})
            self._groups.move_to_end(group)
            applied = self._applied.setdefault(group, set())
            if update_id is not None and f"{field}|{update_id}" in applied:
                return fields.get(field), False
            fields[field] = change(fields.get(field))
            if update_id is not None:
                applied.add(f"{field}|{update_id}")
            while len(self._groups) > self.max_groups:
                old, _ = self._groups.popitem(last=False)
                self._applied.pop(old, None)
            return fields[field], True

    def reset(self, group: str) -> bool:
        with self._lock:
            self._applied.pop(group, None)
            return self._groups.pop(group, None) is not None
