"""A worker's lifecycle: load what it serves, warm up, announce itself (heartbeat) and keep
its jobs' leases, run the scheduler's steps (``service.worker.scheduler``) through Redis
outages and refused commands, and stop gracefully on SIGTERM (it finishes the current job and
hands unstarted ones back to the queue)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import redis

from adapters.engine import Engine
from contract.catalog import method_specs
from service.queue.consumer import Consumer
from service.queue.keys import Keys
from service.queue.routing import worker_routes
from service.settings import Settings
from service.worker import metrics
from service.worker.exemplars import ExemplarStore
from service.worker.finetune_job import FinetuneJob
from service.worker.keepalive import KeepAlive
from service.worker.method_state import RedisStateStore
from service.worker.retention import TrainingRetention
from service.worker.runner import Runner
from service.worker.scheduler import Scheduler
from service.worker.versions import ModelVersions
from service.worker.warmup import warm_up

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
BACKOFF_MAX_S = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(self, settings: Settings, engine: Engine, client: redis.Redis,
                 worker_id: str | None = None) -> None:
        self.settings = settings
        self.engine = engine
        keys = Keys(settings.redis_prefix)
        engine.state_store = RedisStateStore(  # TDA: one per tenant and label set
            client, keys, ttl_s=settings.method_state_ttl_s,
            max_groups=settings.max_method_state_groups_per_key)
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self.methods = [s.name for s in method_specs()
                        if not (s.needs_reward_model and engine.models.reward is None)
                        and not (s.needs_mllm and engine.models.mllm is None)]
        self.consumer = Consumer(client, keys, self.worker_id, ttl_s=settings.job_ttl_s,
                                 max_attempts=settings.max_attempts,
                                 routes=worker_routes(self.methods, engine.models.policy.name),
                                 log_ttl_s=settings.rectifications_ttl_s, drift=settings.drift_limits)
        self.keepalive = KeepAlive(self.consumer, lease_s=settings.lease_s,
                                   heartbeat_s=settings.heartbeat_s, info=self.info)
        # Fine-tuning: model versions on demand, retained training images, the finetune job.
        self.versions = ModelVersions(engine, settings.model_store,
                                      int(settings.max_resident_versions_mb * 1024 * 1024))
        runner = Runner(engine, self.consumer, self.worker_id, settings.max_image_pixels,
                        ExemplarStore(client, keys, settings.max_image_pixels),
                        versions=self.versions, retention=TrainingRetention(client, keys))
        self.scheduler = Scheduler(settings, engine, self.consumer, self.keepalive, runner,
                                   FinetuneJob(self.consumer, self.versions, settings.max_image_pixels),
                                   self.methods)
        self.stopping = threading.Event()
        self.started_ms = int(time.time() * 1000)

    def info(self) -> dict[str, Any]:
        models = self.engine.models
        return {
            "id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
            "model": models.policy.name, "reward_model": models.reward.name if models.reward else None,
            "mllm": models.mllm.name if models.mllm else None,
            "device": str(models.policy.clip.device), "methods": self.methods,
            "heartbeat_s": self.settings.heartbeat_s, "started_ms": self.started_ms,
            "jobs_done": self.scheduler.jobs_done, "busy": self.scheduler.busy,
            "resident_versions": self.versions.resident(),
        }

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            log.info("signal %d: finishing the current job, then stopping", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def serve(self) -> None:
        metrics.declare(self.methods)
        warm_up(self.engine, self.methods)
        self._until_redis(self.consumer.ensure_group)
        self._until_redis(self.keepalive.start)
        metrics.WORKER_UP.set(1)
        log.info("worker %s serving %s", self.worker_id, ", ".join(self.methods))
        backoff = 0.1
        group_missing = False
        while not self.stopping.is_set():
            try:
                if group_missing:
                    self.consumer.ensure_group()
                    group_missing = False
                self.scheduler.step(READ_BLOCK_MS)
                backoff = 0.1
            except redis.ResponseError as exc:
                # Any reply error: the group lost with Redis's data, a script lost again and
                # again, a command refused (out of memory, a replica, a bug). The job in hand went
                # back to ``pending`` (``Scheduler.step``); the worker keeps serving and retries
                # after a backoff, and a job that keeps failing so uses up its attempts and goes dead.
                metrics.REDIS_ERRORS.inc()
                if "NOGROUP" in str(exc) and not group_missing:
                    log.warning("consumer group missing (Redis lost its data?); recreating it")
                    group_missing = True
                    continue
                log.warning("redis refused a command (%s); retrying in %.1fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
            except redis.RedisError as exc:
                metrics.REDIS_ERRORS.inc()
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
        self.shutdown()

    def _until_redis(self, action: Any) -> None:
        backoff = 0.1
        while True:
            try:
                action()
                return
            except redis.ConnectionError as exc:
                log.warning("waiting for redis (%s)", exc)
                time.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)

    def shutdown(self) -> None:
        metrics.WORKER_UP.set(0)
        try:
            self.scheduler.release_pending()
            self.keepalive.stop()
            self.consumer.unregister()
        except redis.RedisError as exc:
            log.warning("shutdown: redis unavailable (%s); unstarted jobs will be reclaimed", exc)
        log.info("worker %s stopped", self.worker_id)
