"""Which jobs a worker runs together, and when: one job at a time, except that jobs already
waiting in the same stream run together (zero-shot jobs in one forward pass, TPT/RLCF/ZERO/auto jobs
with the same request as one episode set), and that a long background job (a fine-tune, a
label set's preparation) serves the classify jobs queued behind it between its steps.

The worker's lifecycle (heartbeat, leases, Redis outages, shutdown) is ``service.worker.main``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import redis
import torch

from adapters.engine import Engine
from contract.catalog import get_spec
from service.queue.consumer import Consumer, Delivery, Start, StartedJob
from service.queue.keys import Keys
from service.queue.routing import ANY_WORKER, route
from service.settings import Settings
from service.worker import metrics
from service.worker.episodes import episode_groups
from service.worker.finetune_job import FinetuneJob
from service.worker.keepalive import KeepAlive
from service.worker.runner import JobFailed, Runner

log = logging.getLogger(__name__)

BATCH_POLL_S = 0.001
BACKGROUND_SLICE_S = 0.05
"""A background job looks for waiting classify jobs at most this often (between its steps)."""
EARLY_EPISODE_MAX_AGE_MS = 3
"""An episode job that woke an idle worker runs before its START reply (and without a look
for set-mates) only if it woke it as it was queued: an older one may have mates behind it."""


class Scheduler:
    def __init__(self, settings: Settings, engine: Engine, consumer: Consumer, keepalive: KeepAlive,
                 runner: Runner, finetunes: FinetuneJob, methods: list[str]) -> None:
        self.settings = settings
        self.engine = engine
        self.consumer = consumer
        self.keepalive = keepalive
        self.runner = runner
        self.finetunes = finetunes
        runner.between_steps = finetunes.between_steps = self.serve_waiting_requests
        keys: Keys = consumer.keys
        model = engine.models.policy.name
        self.batch_streams = [keys.jobs(route(m, pin)) for m in methods if get_spec(m).batchable
                              for pin in (None, model)]
        """Streams of the jobs that share a zero-shot batch."""
        self.episode_streams = [keys.jobs(route(m, pin)) for m in methods
                                if settings.episode_batch_max > 1 and engine.method(m).episodes_batch
                                for pin in (None, model)]
        """Streams of the jobs tuned together as episode sets."""
        self.state_keeping_streams = {keys.jobs(route(m, pin)) for m in methods if get_spec(m).may_keep_state
                                      for pin in (None, model)}
        """Streams of jobs that may write shared online state: never run before their START
        reply, which may say they were not to run (cancelled, expired)."""
        self.interactive_streams = [s for s in consumer.streams if s != keys.jobs(ANY_WORKER)]
        """Every stream but the background jobs' (``routing.ANY_WORKER``)."""
        self.pending: deque[Delivery] = deque()
        self.taken: list[Delivery] = []
        """Deliveries of the run in progress (back to ``pending`` if Redis fails mid-run)."""
        self.jobs_done = 0
        self.busy = False
        self.take_came_short = False
        """The last look at the queue (this iteration) took fewer jobs than it asked for: it is
        drained, and a batch that cannot wait need not look again."""
        self._last_reclaim = 0.0
        self._last_pause = 0.0
        self._pausing = False

    # One iteration -----------------------------------------------------------------------

    def step(self, block_ms: int) -> None:
        self.take_came_short = False
        if not self.pending:
            for delivery in self.fetch(block_ms):
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

    def process(self, delivery: Delivery) -> None:
        if delivery.resumed and not self.consumer.owns(delivery):
            log.info("job %s was taken over by another worker while Redis was away", delivery.job_id)
            self.keepalive.drop(delivery)
            return
        if delivery.stream in self.batch_streams:
            self.run_zeroshot_batch(delivery)
            return
        if delivery.stream in self.episode_streams:
            if self.may_start_early(delivery) and delivery.age_ms() <= EARLY_EPISODE_MAX_AGE_MS:
                job: StartedJob | None = self.start_early(delivery)
                self.take_came_short = True  # (no look for set-mates: the queue was empty)
            else:
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
        """Busy (in the heartbeat and the busy gauge) while jobs run (also when a job runs in the
        pause of a background job, which is still busy after it)."""
        was_busy = self.busy
        self.busy = True
        metrics.WORKER_BUSY.set(1)
        try:
            yield
        finally:
            self.busy = was_busy
            metrics.WORKER_BUSY.set(1 if was_busy else 0)

    # Background jobs make room for classify jobs ------------------------------------------

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
        with torch.enable_grad():  # (the background job may pause inside its own no-grad block)
            self._serve_in_pause()

    def _serve_in_pause(self) -> None:
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
        except redis.RedisError:
            # Redis failed in the pause: what it took waits behind the background job, to be
            # checked and resumed as ``step`` does (the background job meets the failure too).
            outer[1].extend(replace(d, resumed=True) for d in [*self.taken, *self.pending])
            raise
        finally:
            self.taken, self.pending, self.take_came_short = outer
            self._pausing = False

    # Starting jobs ----------------------------------------------------------------------------

    def begin(self, delivery: Delivery) -> StartedJob | None:
        return self.started_or_acked([delivery], self.consumer.start([delivery])[0])[0]

    def begin_with_mates(self, delivery: Delivery) -> StartedJob | None:
        """``begin``, taking the jobs queued behind it in its stream in the same round trip:
        its possible set-mates, first in line for ``collect_episodes``. (Up to the set's size in
        jobs: a job's images are known only from its start, so behind a first job of several
        images some mates may wait here for the next set, held like any pending job.)"""
        wanted = self.settings.episode_batch_max - 1
        starts, mates = self.consumer.start([delivery], then_take=([delivery.stream], wanted))
        self.take_came_short = len(mates) < wanted
        for mate in mates:
            self.keepalive.hold(mate)
        self.pending.extendleft(reversed(mates))
        return self.started_or_acked([delivery], starts)[0]

    def may_start_early(self, delivery: Delivery) -> bool:
        """A job that woke this idle worker, carried whole by its entry, with nothing else
        taken, that keeps no shared state: it runs before its START reply is read
        (``Consumer.start_early``)."""
        return (delivery.waited and not delivery.resumed and delivery.carried is not None
                and delivery.owner is not None and not self.pending
                and delivery.stream not in self.state_keeping_streams)

    def start_early(self, delivery: Delivery) -> StartedJob:
        job = self.consumer.start_early(delivery)
        metrics.QUEUE_WAIT.labels(job.spec.method).observe(job.queue_ms / 1000)
        return job

    def started_or_acked(self, deliveries: list[Delivery], starts: list[Start]) -> list[StartedJob | None]:
        """The jobs of these START outcomes; those not to run (missing, finished, dead or
        expired: their error event, if any, is out) are counted and acked."""
        started: list[StartedJob | None] = []
        not_run: list[Delivery] = []
        for delivery, (outcome, job) in zip(deliveries, starts, strict=True):
            started.append(job)
            if job is not None:
                metrics.QUEUE_WAIT.labels(job.spec.method).observe(job.queue_ms / 1000)
                continue  # its "started" event is out
            self.count_not_run(delivery.job_id, outcome)
            not_run.append(delivery)
        if not_run:
            self.ack(*not_run)
        return started

    @staticmethod
    def count_not_run(job_id: str, outcome: str | None) -> None:
        if outcome == "dead":
            metrics.DEAD_LETTERS.inc()
            metrics.JOBS.labels("unknown", "dead_letter").inc()
        elif outcome == "expired":
            metrics.JOBS.labels("unknown", "expired").inc()
        log.info("job %s: %s; acknowledged without running", job_id, outcome)

    def started(self, deliveries: list[Delivery]) -> list[tuple[Delivery, StartedJob]]:
        """These jobs started together (one round trip), those that run."""
        jobs = self.started_or_acked(deliveries, self.consumer.start(deliveries)[0])
        return [(delivery, job) for delivery, job in zip(deliveries, jobs, strict=True) if job is not None]

    # Zero-shot batches and episode sets ----------------------------------------------------------

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
        costs a lone request a round trip, and a small one runs before its START reply."""
        if first.waited and self.settings.batch_wait_ms <= 0 and not self.pending:
            if self.may_start_early(first):
                return [(first, self.start_early(first))]
            return self.started([first])
        return self.collect(0, self.settings.batch_max_images, self.batch_streams,
                            time.monotonic() + self.settings.batch_wait_ms / 1000, unstarted=[first])

    def tunes_together(self, job: StartedJob) -> bool:
        return (job.spec.kind == "classify" and self.settings.episode_batch_max > 1
                and self.engine.method(job.spec.method).episodes_batch)

    def collect_episodes(self, first: Delivery, job: StartedJob) -> list[tuple[Delivery, StartedJob]]:
        """Jobs of the same stream already queued, up to the episode-set size in images: no
        waiting (a lone request is not delayed); under load the queue fills while a set runs,
        so the next set is fuller. ``episode_groups`` then splits them by their requests.
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

    # Finishing ---------------------------------------------------------------------------------

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
        statuses = self.ack(*(delivery for delivery, _ in jobs))
        for (_, job), status in zip(jobs, statuses, strict=True):
            if not self.consumer.confirmed(job):  # started early, and its START said not to run
                self.count_not_run(job.spec.job_id, job.early.outcome if job.early else None)
                continue
            metrics.JOBS.labels(job.spec.method, "done" if status == "done" else "failed").inc()
        self.jobs_done += len(jobs)

    def ack(self, *deliveries: Delivery) -> list[str | None]:
        """Acknowledge; the jobs' statuses as they are now."""
        try:
            return self.consumer.ack(*deliveries)
        finally:
            for delivery in deliveries:
                self.keepalive.drop(delivery)

    def release_pending(self) -> None:
        """Hand every job taken but not started back to the queue (a worker that stops)."""
        while self.pending:
            delivery = self.pending.popleft()
            self.consumer.release(delivery)
            self.keepalive.drop(delivery)
