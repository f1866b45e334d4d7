"""A background thread that renews the leases of the jobs this worker holds and publishes its
heartbeat, so a long job is never reclaimed by mistake and readiness sees a live worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from service.queue.consumer import Consumer, Delivery
from service.worker import metrics

log = logging.getLogger(__name__)


class KeepAlive:
    def __init__(self, consumer: Consumer, *, lease_s: float, heartbeat_s: float,
                 info: Callable[[], dict[str, Any]]) -> None:
        self.consumer = consumer
        self.period_s = min(lease_s / 3, heartbeat_s)
        self.info = info
        self._held: set[Delivery] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keepalive", daemon=True)

    def hold(self, delivery: Delivery) -> None:
        with self._lock:
            self._held.add(delivery)

    def drop(self, delivery: Delivery) -> None:
        with self._lock:
            self._held.discard(delivery)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def beat(self) -> None:
        self.consumer.heartbeat(self.info())  # first: a lease problem must not hide the worker
        with self._lock:
            held = list(self._held)
        lost = self.consumer.renew(held)
        with self._lock:  # an entry acked meanwhile was dropped already: not a loss
            lost = [delivery for delivery in lost if delivery in self._held]
            self._held.difference_update(lost)
        if lost:
            log.warning("no longer holding %s (reclaimed, or lost with Redis's data)",
                        ", ".join(d.job_id for d in lost))

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.beat()
            except redis.RedisError as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("keepalive: redis unavailable (%s); retrying", exc)
