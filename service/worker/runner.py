"""Running started jobs on the engine: decode the stored images, turn the method's callbacks
into events, record each image's result (first writer wins) and translate failures."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import redis
from PIL import Image

from adapters.dicl import Exemplars
from adapters.engine import BatchItem, Engine, EpisodeItem, RunContext
from adapters.types import AdaptationResult, Hooks, Progress, ScoredLabel, scored_dicts
from contract.catalog import get_spec
from contract.errors import TTAError
from contract.images import decode_image
from contract.state_scope import state_key_for
from contract.tiers import tier_method
from service.queue.consumer import Consumer, NamedEvent, StartedJob
from service.queue.schemas import JobSpec, now_ms
from service.worker import metrics
from service.worker.exemplars import ExemplarStore
from service.worker.retention import TrainingRetention
from service.worker.versions import ModelVersions

log = logging.getLogger(__name__)


NON_FINITE = "model_unusable"
"""The error code of a job whose model answers NaN."""


class JobFailed(Exception):
    """The job cannot complete; its error event says why (already published)."""


def state_key(job: StartedJob) -> str:
    """Scope of cross-request method state: the tenant and its label set."""
    return state_key_for(job.spec.owner, job.spec.label_set, job.spec.labels)


@dataclass
class Runner:
    engine: Engine
    consumer: Consumer
    worker_id: str
    max_image_pixels: int
    label_sets: ExemplarStore
    # Fine-tuning (service/worker/versions.py, retention.py): the model version a job names,
    # and the images a label set retains for training.
    versions: ModelVersions | None = None
    retention: TrainingRetention | None = None
    between_steps: Callable[[], None] = lambda: None
    """Called between the steps of a label set's preparation: the worker serves waiting
    classify jobs there."""
    _confusions_stored: set[tuple[str, str]] = field(default_factory=set)

    def hooks(self, job: StartedJob, index: int) -> Hooks:
        job_id = job.spec.job_id

        def on_zeroshot(top: list[ScoredLabel]) -> None:
            self.consumer.publish(job_id, "zeroshot", {"image": index, "top_k": scored_dicts(top)})

        def on_progress(p: Progress) -> None:
            self.consumer.publish(job_id, "progress", {
                "image": index, "step": p.step, "total_steps": p.total_steps, "loss": p.loss,
                "metric": p.metric, "value": p.value, "top_k": scored_dicts(p.top_k), **(p.detail or {}),
            })

        return Hooks(on_zeroshot=on_zeroshot, on_progress=on_progress)

    @staticmethod
    def zeroshot_event_into(events: dict[tuple[str, int], NamedEvent], job: StartedJob,
                            index: int) -> Hooks:
        """Hooks that keep the zero-shot event for the batch's single write, where it goes with
        the image's result (a zero-shot batch is one pass)."""
        def on_zeroshot(top: list[ScoredLabel]) -> None:
            events[job.spec.job_id, index] = ("zeroshot", {"image": index, "top_k": scored_dicts(top)})

        return Hooks(on_zeroshot=on_zeroshot)

    def load_image(self, job: StartedJob, index: int) -> tuple[bytes, Image.Image]:
        return self.decoded(job, index, job.images.get(index))

    def decoded(self, job: StartedJob, index: int, data: bytes | None) -> tuple[bytes, Image.Image]:
        """The stored image decoded; fails the job (JobFailed) if it expired or is unreadable."""
        if data is None:
            self.fail(job, "images_expired", f"image {index} expired before the job ran")
        try:
            return data, decode_image(data, field=f"images[{index}]", max_pixels=self.max_image_pixels)
        except TTAError as exc:
            self.fail(job, exc.code, exc.message, field=exc.field)

    def exemplars(self, job: StartedJob) -> Exemplars | None:
        spec = job.spec
        if spec.label_set is None or not get_spec(spec.method).needs_exemplars:
            return None
        try:
            return self.label_sets.exemplars(spec.label_set_owned_by, spec.label_set, spec.label_set_version)
        except TTAError as exc:
            self.fail(job, exc.code, exc.message, field=exc.field)

    def prepare_label_set(self, job: StartedJob) -> None:
        """Estimate the label set's transition matrix and publish its most confused pairs."""
        spec = job.spec
        assert spec.label_set is not None
        exemplars = self.exemplars(job) or {}
        try:
            pairs = self.publish_confusions(job, exemplars, force=True, between_classes=self.between_steps)
        except TTAError as exc:
            self.fail(job, exc.code, exc.message, field=exc.field)
        self.consumer.finish_image(spec, 0, {"label_set": spec.label_set, "confused_pairs": pairs,
                                             "model": self.engine.models.policy.name,
                                             "metrics": {"steps": 0}})

    def publish_confusions(self, job: StartedJob, exemplars: Exemplars, force: bool = False,
                           between_classes: Callable[[], None] | None = None) -> list[dict[str, object]]:
        """Store the label set's most confused pairs for this model (once per version)."""
        spec = job.spec
        assert spec.label_set is not None and spec.label_set_version is not None
        model = self.engine.models.policy.name
        if not force and (spec.label_set_version, model) in self._confusions_stored:
            return []
        pairs = self.engine.confusions(spec.labels, spec.templates, exemplars, spec.label_set_version,
                                       between_classes)
        label_set = self.label_sets.label_set(spec.label_set_owned_by, spec.label_set)
        self.label_sets.store_confusions(label_set, model, pairs)
        self._confusions_stored.add((spec.label_set_version, model))
        return pairs

    def rectification_entry(self, job: StartedJob, index: int, data: bytes,
                            result: AdaptationResult) -> dict[str, Any]:
        """The MLLM's decision, as the rectification log keeps it for a later fine-tuning job."""
        spec = job.spec
        return {
            "ts_ms": now_ms(), "job_id": spec.job_id, "image": index,
            "image_sha256": hashlib.sha256(data).hexdigest(), "label_set": spec.label_set,
            "label_set_version": spec.label_set_version, "model": self.engine.models.policy.name,
            "mllm": result.metrics.get("mllm"), "before": result.zeroshot_top_k[0].label,
            "after": result.label, "changed": result.changed,
            "gate_score": result.metrics.get("gate_score"), "candidates": result.metrics.get("candidates"),
        }

    def fail(self, job: StartedJob, code: str, message: str, **extra: Any) -> NoReturn:
        self.consumer.fail(job.spec, code, message, **extra)
        raise JobFailed(code)

    def payload(self, job: StartedJob, result: AdaptationResult) -> dict[str, Any]:
        payload = result.to_dict()
        payload["metrics"].update(queue_ms=job.queue_ms, attempt=job.attempt, worker=self.worker_id)
        return payload

    def record(self, job: StartedJob, index: int, result: AdaptationResult,
               log_entry: dict[str, Any] | None = None) -> None:
        if not result.is_finite():
            self.fail_non_finite(job, index, result)
            raise JobFailed(NON_FINITE)
        written, _ = self.consumer.finish_image(job.spec, index, self.payload(job, result), log_entry)
        self.count(job, index, result, written)

    def fail_non_finite(self, job: StartedJob, index: int, result: AdaptationResult) -> bool:
        """Fail a job whose model answered NaN or infinity even zero-shot (broken weights): a
        clear error, never a result JSON cannot carry. True, for use in a filter."""
        self.consumer.fail(job.spec, NON_FINITE, f"model {result.metrics.get('model')!r} gave a "
                           "non-finite answer (its weights are broken); use another model version",
                           field="model", image=index)
        return True

    def count(self, job: StartedJob, index: int, result: AdaptationResult, written: bool) -> None:
        if not self.consumer.confirmed(job):
            return  # it ran before its START reply, which said not to run it: nothing was answered
        method = job.spec.method
        compute_s = float(result.metrics.get("compute_ms", 0.0)) / 1000.0
        metrics.IMAGES.labels(method).inc()
        metrics.COMPUTE.labels(method).observe(compute_s)
        metrics.STEPS.labels(method).inc(int(result.metrics.get("steps", 0)))
        if result.changed:
            metrics.LABEL_CHANGED.labels(method).inc()
        if method == "auto":  # which tier answered, by its method (bounded labels; not as written)
            metrics.AUTO_ANSWERED.labels(tier_method(str(result.metrics["tier"]))).inc()
            metrics.AUTO_ESCALATIONS.inc(int(result.metrics.get("escalations", 0)))
        if not written:
            log.info("job %s image %d: another worker's result stands", job.spec.job_id, index)

    def engine_of(self, spec: JobSpec) -> Engine:
        """The engine of the job's model version (its ``model``), or the base; TTAError if it
        cannot be loaded, or is not the job's owner's."""
        if self.versions is None or spec.model is None:
            return self.engine
        return self.versions.engine_for(spec.model, spec.owner)

    def engine_for(self, job: StartedJob) -> Engine:
        """The engine of the model the job names (e.g. its label set's pointer); fails the job
        if that model cannot be loaded."""
        try:
            return self.engine_of(job.spec)
        except TTAError as exc:
            self.fail(job, exc.code, exc.message, field=exc.field)

    def run(self, job: StartedJob) -> None:
        """All images of the job not finished by an earlier attempt, one after another."""
        spec = job.spec
        if spec.kind == "prepare_label_set":
            self.prepare_label_set(job)
            return
        engine = self.engine_for(job)
        exemplars = self.exemplars(job)
        for index in range(spec.n_images):
            if index in job.done_images:
                continue
            data, image = self.load_image(job, index)
            self.run_image(engine, job, index, data, image, exemplars)

    def run_image(self, engine: Engine, job: StartedJob, index: int, data: bytes,
                  image: Image.Image, exemplars: Exemplars | None = None) -> None:
        spec = job.spec
        with self.failing_as(job, index):
            request = job.request
            result = engine.run(request, image, seed=request.seed + index, hooks=self.hooks(job, index),
                                context=RunContext(state_key=state_key(job), exemplars=exemplars,
                                                   label_set_version=spec.label_set_version,
                                                   update_id=f"{spec.job_id}/{index}"))
        rectifies = exemplars is not None and get_spec(spec.method).needs_mllm
        self.record_adapted(engine, job, index, data, result,
                            self.rectification_entry(job, index, data, result) if rectifies else None)
        if rectifies and exemplars is not None:
            self.publish_confusions(job, exemplars)

    @contextmanager
    def failing_as(self, job: StartedJob, index: int | None) -> Iterator[None]:
        """A method's failure fails this job (JobFailed), with its own error event."""
        where = {} if index is None else {"image": index}
        try:
            yield
        except TTAError as exc:
            self.fail(job, exc.code, exc.message, field=exc.field, **where)
        except redis.RedisError:
            raise  # from an event hook: the job is not failed, it resumes when Redis is back
            # (also TDA's shared state: its update is idempotent per job image)
        except Exception as exc:  # a bug or a device error: fail this job, keep serving
            log.exception("job %s failed", job.spec.job_id)
            self.fail(job, "internal_error", f"{type(exc).__name__}: {exc}", **where)

    def record_adapted(self, engine: Engine, job: StartedJob, index: int, data: bytes,
                       result: AdaptationResult, log_entry: dict[str, Any] | None = None) -> None:
        result.metrics["model"] = engine.models.policy.name
        # (a job started early whose START said not to run keeps nothing to train on)
        if self.retention is not None and self.consumer.confirmed(job):
            self.retention.keep(job, index, data, result, engine.models.policy.name)
        self.record(job, index, result, log_entry)

    def run_episodes(self, jobs: list[StartedJob], max_images: int, max_prompts: int) -> None:
        """The unfinished images of these jobs (one method, model, labels, templates, options
        and top_k: ``service.worker.episodes.episode_key``) as episode sets tuned together.
        Jobs are checked one by one first, so a job that cannot run fails alone; if a set
        fails, its images run one by one, so no job's error reaches another job."""
        items = self.runnable_images(jobs, lambda job: self.engine_of(job.spec).check(job.request))
        if not items:
            return
        engine = self.engine_of(items[0][0].spec)  # one model per set; loaded by the check
        size = max(1, min(max_images, max_prompts // max(1, len(items[0][0].request.labels))))
        for start in range(0, len(items), size):
            self._run_episode_set(engine, items[start : start + size])

    def _run_episode_set(self, engine: Engine,
                         items: list[tuple[StartedJob, int, bytes, Image.Image]]) -> None:
        # The set's jobs share one request but for seeds (``episode_key``): any one's serves.
        request = items[0][0].request
        metrics.EPISODE_BATCH.observe(len(items))
        recorded: set[tuple[str, int]] = set()
        failed: set[str] = set()

        def record(job: StartedJob, index: int, data: bytes, result: AdaptationResult) -> None:
            """Each image once; a job failed by one image (its error is out) records no more."""
            if (job.spec.job_id, index) in recorded or job.spec.job_id in failed:
                return
            recorded.add((job.spec.job_id, index))
            try:
                self.record_adapted(engine, job, index, data, result)
            except JobFailed:
                failed.add(job.spec.job_id)

        def hooks(job: StartedJob, index: int, data: bytes) -> Hooks:
            # (an image settled before its set-mates, e.g. by auto's zero-shot, is answered now)
            return replace(self.hooks(job, index),
                           on_settled=lambda result: record(job, index, data, result))

        try:
            results = engine.run_episodes(request, [
                EpisodeItem(image, job.request.seed + index, hooks(job, index, data),
                            RunContext(state_key=state_key(job), update_id=f"{job.spec.job_id}/{index}"))
                for job, index, data, image in items])
        except redis.RedisError:
            raise
        except Exception:
            log.exception("episode set of %d images failed; running them one by one", len(items))
            for job, index, data, image in items:
                if (job.spec.job_id, index) in recorded or job.spec.job_id in failed:
                    continue
                try:
                    self.run_image(engine, job, index, data, image)
                except JobFailed:
                    failed.add(job.spec.job_id)
            return
        for (job, index, data, _), result in zip(items, results, strict=True):
            record(job, index, data, result)

    def runnable_images(self, jobs: list[StartedJob], check: Callable[[StartedJob], object],
                        ) -> list[tuple[StartedJob, int, bytes, Image.Image]]:
        """(job, index, bytes, decoded image) for every unfinished image of the jobs that pass
        ``check`` (it raises TTAError), as their start fetched them. A job that fails its check
        or has an expired or unreadable image fails alone, with its own error, and adds nothing."""
        runnable = []
        for job in jobs:
            try:
                with self.failing_as(job, None):
                    check(job)
                runnable.append(job)
            except JobFailed:
                continue
        wanted = [(job, index) for job in runnable for index in range(job.spec.n_images)
                  if index not in job.done_images]
        images: list[tuple[StartedJob, int, bytes, Image.Image]] = []
        failed: set[str] = set()
        for job, index in wanted:
            if job.spec.job_id in failed:
                continue
            try:
                images.append((job, index, *self.load_image(job, index)))
            except JobFailed:
                failed.add(job.spec.job_id)
        return [image for image in images if image[0].spec.job_id not in failed]

    def run_zeroshot_batch(self, jobs: list[StartedJob]) -> None:
        """Every unfinished image of these zero-shot jobs in one forward pass, with one Redis
        round trip to write their events and results. Jobs are checked one by one first, so a
        job that cannot run fails alone with its own error; if the batched pass still fails,
        each job is run on its own, so no job's error (which may quote its labels) ever reaches
        another job."""
        events: dict[tuple[str, int], NamedEvent] = {}
        items = [(job, index, BatchItem(job.request, image, self.zeroshot_event_into(events, job, index)))
                 for job, index, _, image in self.runnable_images(jobs, lambda job: job.request)]
        if not items:
            return
        metrics.BATCH_SIZE.observe(len(items))
        try:
            results = self._zeroshot_by_model(items)
        except redis.RedisError:
            raise
        except Exception:
            log.exception("zero-shot batch of %d jobs failed; running them one by one", len(jobs))
            for job in {id(j): j for j, _, _ in items}.values():
                self.run_zeroshot_alone(job, [(j, i, replace(item, hooks=self.hooks(j, i)))
                                              for j, i, item in items if j is job])
            return
        answered = list(zip(items, results, strict=True))
        failed = {job.spec.job_id for (job, index, _), result in answered
                  if not result.is_finite() and self.fail_non_finite(job, index, result)}
        answered = [entry for entry in answered if entry[0][0].spec.job_id not in failed]
        written = self.consumer.finish_images(
            [(job.spec, index, self.payload(job, result), events.get((job.spec.job_id, index)))
             for (job, index, _), result in answered])
        for ((job, index, _), result), (was_written, _) in zip(answered, written, strict=True):
            self.count(job, index, result, was_written)

    def run_zeroshot_alone(self, job: StartedJob, items: list[tuple[StartedJob, int, BatchItem]]) -> None:
        try:
            engine = self.engine_of(job.spec)
            results = engine.run_zeroshot_batch([item for _, _, item in items])
        except redis.RedisError:
            raise
        except TTAError as exc:
            self.consumer.fail(job.spec, exc.code, exc.message, field=exc.field)
            return
        except Exception as exc:
            log.exception("job %s failed", job.spec.job_id)
            self.consumer.fail(job.spec, "internal_error", f"{type(exc).__name__}: {exc}")
            return
        for (_, index, _), result in zip(items, results, strict=True):
            result.metrics["model"] = engine.models.policy.name
            self.record(job, index, result)

    def _zeroshot_by_model(self, items: list[tuple[StartedJob, int, BatchItem]]) -> list[AdaptationResult]:
        """One batched pass per model version among the items, results in the items' order.
        A version that cannot be loaded raises: the caller then runs each job alone."""
        groups: dict[tuple[str | None, str], list[int]] = {}
        for position, (job, _, _) in enumerate(items):
            groups.setdefault((job.spec.model, job.spec.owner), []).append(position)
        results: list[AdaptationResult | None] = [None] * len(items)
        for positions in groups.values():
            engine = self.engine_of(items[positions[0]][0].spec)
            batch = engine.run_zeroshot_batch([items[p][2] for p in positions])
            for position, result in zip(positions, batch, strict=True):
                result.metrics["model"] = engine.models.policy.name
                results[position] = result
        return [r for r in results if r is not None]
