"""Events a worker publishes while it computes, sent without waiting for Redis's replies.

A method's steps publish a ``zeroshot`` event and a ``progress`` event per step. Waiting a
round trip for each (about 0.4 ms here) put every one of them on the request's critical path.
Here each is written to a connection of its own at once, so it still streams out as its step
happens, and its reply is read later, by ``settle()``, which the consumer calls before any
write that must come after the events (a result, an error, an ack): replies come back in
order, so once they are read every event sent is in Redis. Only the worker's main thread may
use it.

A small job's START can go the same way (``Consumer.start_early``): sent first on this
connection, it runs in Redis before any of the job's events, and its reply is handed to a
callback when it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from service.queue.scripts import PersistentScript

_NO_SCRIPT = object()
"""A reply that says Redis had lost the script: the call did nothing, and is run again."""


@dataclass(frozen=True)
class _Call:
    script: PersistentScript
    keys: list[str]
    args: list[Any]
    on_reply: Callable[[Any], None] | None


class EventSender:
    def __init__(self, client: redis.Redis, script: PersistentScript) -> None:
        self.client = client
        self.script = script
        """The PUBLISH script."""
        self._connection: Any = None
        self._unsettled: list[_Call] = []

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    def send(self, keys: list[str], args: list[Any], *, script: PersistentScript | None = None,
             on_reply: Callable[[Any], None] | None = None) -> None:
        """Run the script (default: PUBLISH) with these keys and args; its reply is read by
        ``settle``, which hands it to ``on_reply``."""
        call = _Call(script or self.script, keys, args, on_reply)
        if self._connection is None:
            self._connection = self.client.connection_pool.get_connection()
        try:
            # No health check: its PING would read one of the replies still unread.
            self._connection.send_command("EVALSHA", call.script.sha, len(keys), *keys, *args,
                                          check_health=False)
        except redis.RedisError:
            self._drop_connection()
            raise
        self._unsettled.append(call)

    def settle(self) -> None:
        """Read every reply still unread. If Redis lost its scripts (a restart), every call
        since then failed without effect: those are run again, in order (the script is loaded
        again as often as needed). A lost connection raises (a RedisError: the worker retries
        the job)."""
        if not self._unsettled:
            return
        sent, self._unsettled = self._unsettled, []
        replies: list[Any] = []
        try:
            for _ in sent:
                try:
                    replies.append(self._connection.read_response())
                except redis.exceptions.NoScriptError:
                    replies.append(_NO_SCRIPT)
        except redis.RedisError:
            self._drop_connection()
            raise
        for call, reply in zip(sent, replies, strict=True):
            if reply is _NO_SCRIPT:
                reply = call.script(keys=call.keys, args=call.args)
            if call.on_reply is not None:
                call.on_reply(reply)

    def _drop_connection(self) -> None:
        """Forget a connection whose replies can no longer be matched to their calls."""
        self._unsettled = []
        if self._connection is not None:
            self._connection.disconnect()
            self.client.connection_pool.release(self._connection)
            self._connection = None
