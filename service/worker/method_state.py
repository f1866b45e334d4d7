"""The state store every worker shares: online method state (TDA's caches) in Redis.

Consistency: updates of one group are serialisable. An update reads the group's state and the
set of applied update ids under WATCH, computes the new state, and writes it together with its
id in one MULTI/EXEC; if another worker committed in between, EXEC fails and the update is
recomputed on the newer state, so no update is lost and none is applied twice (a redelivered
job finds its id and changes nothing). A request predicts from the state its own update
committed (or found), which includes every update committed before it: read-your-writes;
concurrent requests of one group may or may not see each other, as with any arrival order.
"""

from __future__ import annotations

import time

import redis

from adapters.state_store import Change
from contract.state_scope import group_owner
from service.queue.keys import APPLIED_TTL_MS, Keys

MAX_RETRIES = 50


class RedisStateStore:
    """Each group lives ``ttl_s`` after its last update; a tenant keeps at most ``max_groups``
    (its least recently updated is dropped beyond: the state is a cache of past requests)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_s: int = 7 * 86_400,
                 max_groups: int = 64) -> None:
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.max_groups = max_groups

    def read(self, group: str, field: str) -> bytes | None:
        value = self.client.hget(self.keys.method_state(group), field)
        return bytes(value) if value is not None else None  # type: ignore[arg-type]

    def update(self, group: str, field: str, update_id: str | None,
               change: Change) -> tuple[bytes | None, bool]:
        key, applied = self.keys.method_state(group), self.keys.method_state_applied(group)
        index = self.keys.method_state_index(group_owner(group))
        marker = f"{field}|{update_id}"
        with self.client.pipeline() as pipe:
            for _ in range(MAX_RETRIES):
                try:
                    pipe.watch(key, applied)
                    current = pipe.hget(key, field)
                    if update_id is not None and pipe.zscore(applied, marker) is not None:
                        pipe.unwatch()
                        return current, False  # type: ignore[return-value]
                    new = change(current)  # type: ignore[arg-type]
                    now = int(time.time() * 1000)
                    pipe.multi()
                    pipe.hset(key, field, new)
                    pipe.expire(key, self.ttl_s)
                    if update_id is not None:
                        pipe.zadd(applied, {marker: now})
                        pipe.zremrangebyscore(applied, 0, now - APPLIED_TTL_MS)
                        pipe.expire(applied, self.ttl_s)
                    pipe.zadd(index, {group: now})
                    pipe.zremrangebyscore(index, 0, now - self.ttl_s * 1000)
                    pipe.expire(index, self.ttl_s)
                    pipe.execute()
                    self._evict_beyond_quota(index)
                    return new, True
                except redis.WatchError:
                    continue
        raise RuntimeError(f"method state {group!r}: {MAX_RETRIES} concurrent updates in a row")

    def _evict_beyond_quota(self, index: str) -> None:
        oldest = [g.decode() for g in self.client.zrange(index, 0, -(self.max_groups + 1))]  # type: ignore[union-attr]
        if oldest:
            self.client.delete(*(k for g in oldest for k in (self.keys.method_state(g),
                                                              self.keys.method_state_applied(g))))
            self.client.zrem(index, *oldest)

    def reset(self, group: str) -> bool:
        return bool(self.client.delete(self.keys.method_state(group), self.keys.method_state_applied(group)))
