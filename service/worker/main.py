"""The worker loop: read (or reclaim) jobs, batch concurrent zero-shot jobs, tune concurrent
TPT/RLCF/ZERO jobs as episode sets, run the others one at a time, ack after the result is written.
Survives Redis outages; stops gracefully on SIGTERM (finishes the current job, hands unstarted
ones back to the queue)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import redis

from adapters.engine import Engine
from contract.catalog import get_spec, method_specs
from service.queue.consumer import Consumer, Delivery, StartedJob
from service.queue.keys import Keys
from service.queue.routing import ANY_WORKER, route, worker_routes
from service.settings import Settings
from service.worker import metrics
from service.worker.episodes import episode_groups
from service.worker.exemplars import ExemplarStore
from service.worker.finetune_job import FinetuneJob
from service.worker.keepalive import KeepAlive
from service.worker.method_state import RedisStateStore
from service.worker.retention import TrainingRetention
from service.worker.runner import JobFailed, Runner
from service.worker.versions import ModelVersions
from service.worker.warmup import warm_up

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
FRESH_ENTRY_MS = 3
"""An episode-set job that woke this worker this soon after it was queued (by its entry id)
runs at once, alone; an older one means the worker was stalled meanwhile, and it looks for
set-mates queued behind it first (``may_start_unanswered``)."""
BATCH_POLL_S = 0.001
BACKGROUND_SLICE_S = 0.05
"""A background job looks for waiting classify jobs at most this often (between its steps)."""
BACKOFF_MAX_S = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(self, settings: Settings, engine: Engine, client: redis.Redis,
                 worker_id: str | None = None) -> None:
        self.settings = settings
        self.engine = engine
        engine.state_store = RedisStateStore(  # TDA: one per tenant and label set
            client, Keys(settings.redis_prefix), ttl_s=settings.method_state_ttl_s,
            max_groups=settings.max_method_state_groups_per_key)
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        keys = Keys(settings.redis_prefix)
        self.methods = [s.name for s in method_specs()
                        if not (s.needs_reward_model and engine.models.reward is None)
                        and not (s.needs_mllm and engine.models.mllm is None)]
        model = engine.models.policy.name
        self.consumer = Consumer(client, keys, self.worker_id, ttl_s=settings.job_ttl_s,
                                 max_attempts=settings.max_attempts,
                                 routes=worker_routes(self.methods, model),
                                 log_ttl_s=settings.rectifications_ttl_s)
        self.batch_streams = [keys.jobs(route(m, pin)) for m in self.methods if get_spec(m).batchable
                              for pin in (None, model)]
        """Streams of the jobs that share a zero-shot batch."""
        self.episode_streams = [keys.jobs(route(m, pin)) for m in self.methods
                                if settings.episode_batch_max > 1 and engine.method(m).episodes_batch
                                for pin in (None, model)]
        """Streams of the jobs tuned together as episode sets."""
        # Fine-tuning: model versions on demand, retained training images, the finetune job.
        self.versions = ModelVersions(engine, settings.model_store,
                                      int(settings.max_resident_versions_mb * 1024 * 1024))
        # Background jobs (fine-tunes, label-set preparations) serve waiting classify jobs
        # between their steps (``serve_waiting_requests``).
        self.finetunes = FinetuneJob(self.consumer, self.versions, settings.max_image_pixels,
                                     between_steps=self.serve_waiting_requests)
        self.runner = Runner(engine, self.consumer, self.worker_id, settings.max_image_pixels,
                             ExemplarStore(client, keys, settings.max_image_pixels),
                             versions=self.versions, retention=TrainingRetention(client, keys),
                             between_steps=self.serve_waiting_requests)
        self.interactive_streams = [s for s in self.consumer.streams if s != keys.jobs(ANY_WORKER)]
        """Every stream but the background jobs' (``routing.ANY_WORKER``)."""
        self._last_pause = 0.0
        self._pausing = False
        self.keepalive = KeepAlive(self.consumer, lease_s=settings.lease_s,
                                   heartbeat_s=settings.heartbeat_s, info=self.info)
        self.pending: deque[Delivery] = deque()
        self.taken: list[Delivery] = []
        """Deliveries of the run in progress (back to ``pending`` if Redis fails mid-run)."""
        self.stopping = threading.Event()
        self.started_ms = int(time.time() * 1000)
        self.jobs_done = 0
        self.busy = False
        self.take_came_short = False
        """The last look at the queue (this iteration) took fewer jobs than it asked for: it is
        drained, and a batch that cannot wait need not look again."""
        self._last_reclaim = 0.0

    def info(self) -> dict[str, Any]:
        models = self.engine.models
        return {
            "id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
            "model": models.policy.name, "reward_model": models.reward.name if models.reward else None,
            "mllm": models.mllm.name if models.mllm else None,
            "device": str(models.policy.clip.device), "methods": self.methods,
            "heartbeat_s": self.settings.heartbeat_s, "started_ms": self.started_ms,
            "jobs_done": self.jobs_done, "busy": self.busy,
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
                self.step()
                backoff = 0.1
            except redis.ResponseError as exc:
                # Any reply error: the group lost with Redis's data, a script lost again and
                # again, a command refused (out of memory, a replica, a bug). The job in hand went
                # back to ``pending`` (``step``); the worker keeps serving and retries after a
                # backoff, and a job that keeps failing so uses up its attempts and goes dead.
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
            self.consumer.flush_acks()
            while self.pending:
                delivery = self.pending.popleft()
                self.consumer.release(delivery)
                self.keepalive.drop(delivery)
            self.keepalive.stop()
            self.consumer.unregister()
        except redis.RedisError as exc:
            log.warning("shutdown: redis unavailable (%s); unstarted jobs will be reclaimed", exc)
        log.info("worker %s stopped", self.worker_id)

    # One iteration -----------------------------------------------------------------------

    def step(self) -> None:
        self.take_came_short = False
        if not self.pending:
            for delivery in self.fetch(READ_BLOCK_MS):
                self.keepalive.hold(delivery)
                self.pending.append(delivery)
        if not self.pending:
            return
        self.taken = [self.pending.popleft()]
        try:
            self.process(self.taken[0])
        except redis.RedisError:
            # Redis went away mid-job: keep these jobs and run them again when it is back (a
            # persisted Redis still lists them as ours; finished images are not re-run).
            self.pending.extendleft(replace(d, resumed=True) for d in reversed(self.taken))
            raise
        finally:
            self.taken = []

    def process(self, delivery: Delivery) -> None:
        if delivery.resumed and not self.consumer.owns(delivery):
            log.info("job %s was taken over by another worker while Redis was away", delivery.job_id)
            self.keepalive.drop(delivery)
            return
        if delivery.stream in self.batch_streams:
            self.run_zeroshot_batch(delivery)
            return
        if self.may_start_unanswered(delivery):
            job: StartedJob | None = self.start_unanswered(delivery)
        elif delivery.stream in self.episode_streams:
            job = self.begin_with_mates(delivery)
        else:
            job = self.begin(delivery)
        if job is None:
            return
        with self.working():
            if job.spec.kind == "finetune":
                self.finish([(delivery, job)], lambda: self.finetunes.run(job))
            elif self.tunes_together(job):
                for group in episode_groups([(delivery, job), *self.collect_episodes(delivery, job)]):
                    self.finish(group, partial(self.runner.run_episodes, [j for _, j in group],
                                               self.settings.episode_batch_max,
                                               self.settings.episode_batch_prompts))
            else:
                self.finish([(delivery, job)], lambda: self.runner.run(job))

    @contextmanager
    def working(self) -> Iterator[None]:
        """Busy (in ``info`` and the busy gauge) while jobs run (also when a job runs in the
        pause of a background job, which is still busy after it)."""
        was_busy = self.busy
        self.busy = True
        metrics.WORKER_BUSY.set(1)
        try:
            yield
        finally:
            self.busy = was_busy
            metrics.WORKER_BUSY.set(1 if was_busy else 0)

    def serve_waiting_requests(self) -> None:
        """Between two steps of a background job (a fine-tune, a label set's preparation): run
        the classify jobs queued meanwhile, one read's worth (a zero-shot batch, an episode
        set, or one job), at most once per ``BACKGROUND_SLICE_S``. A classify then waits for
        at most one step of a long background job, and under any load the background job
        still advances a step between two such reads. Its own delivery stays held meanwhile
        (the keep-alive renews it)."""
        now = time.monotonic()
        if self._pausing or now - self._last_pause < BACKGROUND_SLICE_S:
            return
        self._last_pause = now
        self._pausing = True
        outer = self.taken, self.pending, self.take_came_short
        self.pending = deque()
        try:
            mates = self.settings.batch_max_images - 1
            for delivery in self.consumer.read_new(None, self.interactive_streams,
                                                   mates=(self.batch_streams, mates)):
                self.keepalive.hold(delivery)
                self.pending.append(delivery)
            while self.pending:
                self.taken = [self.pending.popleft()]
                self.process(self.taken[0])
            self.consumer.flush_acks()  # not left for the next read, which may be a step away
        except redis.RedisError:
            # Redis failed in the pause: what it took waits behind the background job, to be
            # checked and resumed as ``step`` does (the background job meets the failure too).
            outer[1].extend(replace(d, resumed=True) for d in [*self.taken, *self.pending])
            raise
        finally:
            self.taken, self.pending, self.take_came_short = outer
            self._pausing = False

    def fetch(self, block_ms: int | None) -> list[Delivery]:
        """Reclaimed entries of dead workers first (checked every half lease), then new ones."""
        now = time.monotonic()
        if now - self._last_reclaim >= self.settings.lease_s / 2:
            self._last_reclaim = now
            reclaimed = self.consumer.reclaim(int(self.settings.lease_s * 1000))
            if reclaimed:
                metrics.REDELIVERIES.inc(len(reclaimed))
                log.info("reclaimed %s", ", ".join(d.job_id for d in reclaimed))
                return reclaimed
        # A zero-shot job comes with the batch-mates queued behind it, in the same trip.
        mates = self.settings.batch_max_images - 1
        taken = self.consumer.read_new(block_ms, mates=(self.batch_streams, mates))
        if taken and not taken[0].waited and taken[0].stream in self.batch_streams:
            self.take_came_short = len(taken) - 1 < mates
        return taken

    def begin(self, delivery: Delivery) -> StartedJob | None:
        return self.begin_all([delivery])[0]

    def may_start_unanswered(self, delivery: Delivery) -> bool:
        """A job that woke this idle worker, carried whole by its stream entry, runs at once,
        alone, before its START reply is read: a round trip sooner (``Consumer.start_unanswered``).
        Only a zero-shot or episode-set job: those methods have no effect beyond the job's own
        events and result, so a START that says "do not run" leaves nothing behind (not TDA's
        shared cache, not the MLLM's log). A zero-shot job that woke the worker always ran
        alone (``collect_batch``); an episode-set job does when it woke the worker as it was
        queued (``FRESH_ENTRY_MS``): the queue was empty a moment ago. One that waited longer
        found a stalled worker (a pause, a slow step), with maybe a set's worth queued behind
        it: its start looks for them first (``begin_with_mates``). (The age compares the
        worker's clock with Redis's: skewed clocks only move a job from one way to the other.)"""
        if not (delivery.waited and not delivery.resumed and delivery.carried is not None
                and delivery.owner is not None):
            return False
        if delivery.stream in self.batch_streams:
            return True
        return delivery.stream in self.episode_streams and delivery.age_ms() <= FRESH_ENTRY_MS

    def start_unanswered(self, delivery: Delivery) -> StartedJob:
        job = self.consumer.start_unanswered(delivery)
        self.take_came_short = True  # no look for set-mates: nothing was queued behind it
        metrics.QUEUE_WAIT.labels(job.spec.method).observe(job.queue_ms / 1000)
        return job

    def begin_with_mates(self, delivery: Delivery) -> StartedJob | None:
        """``begin``, taking the jobs queued behind it in its stream in the same round trip:
        its possible set-mates, first in line for ``collect_episodes``. (Up to the set's size in
        jobs: a job's images are known only from its start, so behind a first job of several
        images some mates may wait here for the next set, held like any pending job.)"""
        wanted = self.settings.episode_batch_max - 1
        start, mates = self.consumer.start_and_take(delivery, [delivery.stream], wanted)
        self.take_came_short = len(mates) < wanted
        for mate in mates:
            self.keepalive.hold(mate)
        self.pending.extendleft(reversed(mates))
        return self.begun([delivery], [start])[0]

    def begin_all(self, deliveries: list[Delivery]) -> list[StartedJob | None]:
        """Start these jobs (in one round trip for all of them); None for each that is not to
        run (missing, finished, dead or expired), which is acked here."""
        return self.begun(deliveries, self.consumer.start_all([d.job_id for d in deliveries],
                                                              [d.owner for d in deliveries]))

    def begun(self, deliveries: list[Delivery],
              starts: list[tuple[str, StartedJob | None]]) -> list[StartedJob | None]:
        """The jobs of these START outcomes; those not to run are counted and acked."""
        started: list[StartedJob | None] = []
        not_run: list[Delivery] = []
        for delivery, (outcome, job) in zip(deliveries, starts, strict=True):
            started.append(job)
            if job is not None:
                metrics.QUEUE_WAIT.labels(job.spec.method).observe(job.queue_ms / 1000)
                continue  # its "started" event is out
            if outcome == "dead":
                metrics.DEAD_LETTERS.inc()
                metrics.JOBS.labels("unknown", "dead_letter").inc()
            elif outcome == "expired":
                metrics.JOBS.labels("unknown", "expired").inc()
            log.info("job %s: %s; acknowledged without running", delivery.job_id, outcome)
            not_run.append(delivery)
        if not_run:
            self.ack(*not_run)
        return started

    def run_zeroshot_batch(self, first: Delivery) -> None:
        """The first job and the zero-shot jobs collected with it, started together (one round
        trip for all: the first is not started on its own) and run as one batch."""
        batch = self.collect_batch(first)
        if not batch:
            return
        with self.working():
            self.finish(batch, lambda: self.runner.run_zeroshot_batch([j for _, j in batch]))

    def collect_batch(self, first: Delivery) -> list[tuple[Delivery, StartedJob]]:
        """``first`` (not started yet) and more zero-shot jobs that arrive within the batch
        wait, up to the batch size, all started. The wait is polled in millisecond steps rather
        than a blocking read: Redis wakes blocked readers on timeout only at its event-loop
        granularity, which made a lone request wait ~90 ms, not 5. Without a wait, a job that
        woke an idle worker runs at once: the queue was empty a moment ago, and looking again
        costs a lone request a round trip."""
        if first.waited and self.settings.batch_wait_ms <= 0 and not self.pending:
            if self.may_start_unanswered(first):
                return [(first, self.start_unanswered(first))]
            return self.started([first])
        return self.collect(0, self.settings.batch_max_images, self.batch_streams,
                            time.monotonic() + self.settings.batch_wait_ms / 1000, unstarted=[first])

    def tunes_together(self, job: StartedJob) -> bool:
        return (job.spec.kind == "classify" and self.settings.episode_batch_max > 1
                and self.engine.method(job.spec.method).episodes_batch)

    def collect_episodes(self, first: Delivery, job: StartedJob) -> list[tuple[Delivery, StartedJob]]:
        """Jobs of the same stream already queued, up to the episode-set size in images: no
        waiting (a lone request is not delayed); under load the queue fills while a set runs,
        so the next set is fuller. ``episode_groups`` then splits them by labels and options.
        (Unlike a zero-shot batch, it looks even after a job woke an idle worker: a worker
        that was stalled finds a set's worth queued behind it. That look went with the first
        job's start, ``begin_with_mates``: when it came back short, nothing more is taken.)"""
        return self.collect(job.spec.n_images, self.settings.episode_batch_max, [first.stream],
                            time.monotonic())

    def collect(self, images: int, limit: int, streams: list[str], deadline: float,
                unstarted: list[Delivery] | None = None) -> list[tuple[Delivery, StartedJob]]:
        """More jobs of ``streams`` (started), until they hold ``limit`` images (a job's images
        are not split, so the last job may pass it): those pending in front, then new ones
        until ``deadline``, taken and started together. A job of another stream ends the
        collection and stays first in line. ``unstarted``: jobs taken already, started with
        the first of the others (each counted as one image until its start tells), and first
        in what is returned."""
        collected: list[tuple[Delivery, StartedJob]] = []
        waiting = list(unstarted or [])
        images += len(waiting)
        while images < limit:
            if not self.pending:
                if self.take_came_short and time.monotonic() >= deadline:
                    break  # the last look found the queue drained, and the batch cannot wait
                taken = self._take_from(streams, deadline, limit - images)
                if not taken:
                    break
                for delivery in taken:
                    self.keepalive.hold(delivery)
                self.pending.extend(taken)
            run: list[Delivery] = []
            while self.pending and self.pending[0].stream in streams and len(run) < limit - images:
                run.append(self.pending.popleft())
            if not run:
                break
            self.taken.extend(run)
            begun = self.started(waiting + run)
            collected += begun
            images += sum(job.spec.n_images for _, job in begun) - len(waiting)
            waiting = []
        return self.started(waiting) if waiting else collected  # (nothing more came)

    def started(self, deliveries: list[Delivery]) -> list[tuple[Delivery, StartedJob]]:
        """These jobs started together (``begin_all``), those that run."""
        return [(delivery, job) for delivery, job in zip(deliveries, self.begin_all(deliveries), strict=True)
                if job is not None]

    def _take_from(self, streams: list[str], deadline: float, count: int) -> list[Delivery]:
        while True:
            taken = self.consumer.read_new(None, streams, count)
            self.take_came_short = len(taken) < count
            if taken:
                return taken
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(remaining, BATCH_POLL_S))

    def finish(self, jobs: list[tuple[Delivery, StartedJob]], run: Callable[[], None]) -> None:
        """Run, then ack every job of the run (its result or error event is written by now)."""
        try:
            run()
        except JobFailed:
            pass  # its error event is published
        except redis.RedisError:
            raise  # not acked: the job is retried here or reclaimed elsewhere
        except Exception as exc:  # a bug must not take the worker down: the jobs fail visibly
            log.exception("jobs %s failed", ", ".join(j.spec.job_id for _, j in jobs))
            # The text of the exception may quote any of these jobs' input: none is shown.
            for _, job in jobs:
                self.consumer.fail(job.spec, "internal_error",
                                   f"internal error in the worker ({type(exc).__name__}); see its log")
        jobs = self.confirmed(jobs)

        def counted(statuses: list[str | None]) -> None:
            for (_, job), status in zip(jobs, statuses, strict=True):
                metrics.JOBS.labels(job.spec.method, "done" if status == "done" else "failed").inc()

        # Acked with the next read, which follows at once: one round trip less per run.
        self.consumer.ack_with_next_read([delivery for delivery, _ in jobs], counted)
        for delivery, _ in jobs:
            self.keepalive.drop(delivery)
        self.jobs_done += len(jobs)

    def confirmed(self, jobs: list[tuple[Delivery, StartedJob]]) -> list[tuple[Delivery, StartedJob]]:
        """The jobs whose START said to run. One that ran before its START reply was read and
        was not to run (``start_unanswered``; its run wrote nothing) is counted and acked here,
        as ``begun`` does with any START that says so."""
        run: list[tuple[Delivery, StartedJob]] = []
        not_run: list[Delivery] = []
        outcomes: list[tuple[str, StartedJob | None]] = []
        for delivery, job in jobs:
            if self.consumer.confirmed(job):
                run.append((delivery, job))
            else:
                not_run.append(delivery)
                outcomes.append(((job.unanswered and job.unanswered.outcome) or "missing", None))
        if not_run:
            self.begun(not_run, outcomes)
        return run

    def ack(self, *deliveries: Delivery) -> list[str | None]:
        """Acknowledge; the jobs' statuses as they are now."""
        try:
            return self.consumer.ack(*deliveries)
        finally:
            for delivery in deliveries:
                self.keepalive.drop(delivery)
