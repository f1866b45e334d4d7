"""The worker's Prometheus metrics (served on its own port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from contract.tiers import TIER_METHODS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

WORKER_UP = Gauge("tta_worker_up", "1 while this worker is serving (0 while it loads or stops)")
WORKER_BUSY = Gauge("tta_worker_busy", "1 while this worker runs a job")
JOBS = Counter("tta_jobs_total", "Jobs finished by this worker, by method and outcome",
               ["method", "outcome"])
IMAGES = Counter("tta_images_total", "Images classified, by method", ["method"])
LABEL_CHANGED = Counter("tta_label_changed_total",
                        "Images whose adapted label differs from the zero-shot label, by method",
                        ["method"])
QUEUE_WAIT = Histogram("tta_queue_wait_seconds", "Submission to start of a job, by method",
                       ["method"], buckets=LATENCY_BUCKETS)
COMPUTE = Histogram("tta_compute_seconds", "Compute time per image, by method", ["method"],
                    buckets=LATENCY_BUCKETS)
STEPS = Counter("tta_adaptation_steps_total", "Optimisation steps taken, by method", ["method"])
BATCH_SIZE = Histogram("tta_batch_size", "Images per zero-shot forward pass",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
EPISODE_BATCH = Histogram("tta_episode_batch_size",
                          "Images per episode set of concurrent TPT/RLCF/ZERO/auto jobs run together",
                          buckets=(1, 2, 4, 8, 16, 32))
AUTO_ANSWERED = Counter("tta_auto_answered_total",
                        "Images the auto method answered, by the tier (method) that answered",
                        ["tier"])
AUTO_ESCALATIONS = Counter("tta_auto_escalations_total",
                           "Tiers the auto method ran after zero-shot (an image may escalate twice)")
REDELIVERIES = Counter("tta_redeliveries_total",
                       "Jobs this worker took over from another (dead or stalled) worker")
DEAD_LETTERS = Counter("tta_dead_letters_total", "Jobs moved to the dead-letter stream")
REDIS_ERRORS = Counter("tta_worker_redis_errors_total", "Redis connection failures seen")

OUTCOMES = ("done", "failed")


def declare(methods: list[str]) -> None:
    """Create every per-method series at zero, so dashboards and alerts see them (and their
    rates) from the start instead of only after the first event of each kind."""
    for method in methods:
        for outcome in OUTCOMES:
            JOBS.labels(method, outcome)
        for family in (IMAGES, LABEL_CHANGED, QUEUE_WAIT, COMPUTE, STEPS):
            family.labels(method)
    if "auto" in methods:
        for tier in ("zeroshot", *(m for m in methods if m in TIER_METHODS)):
            AUTO_ANSWERED.labels(tier)
