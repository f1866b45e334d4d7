"""Field names of what the queue keeps in Redis: the job hash, a jobs-stream entry, an event.
Python reads them by these names and the Lua scripts are written with them
(``service.queue.scripts`` substitutes them in), so the two cannot drift apart."""

from __future__ import annotations


class JobField:
    """The job hash (``Keys.job``)."""

    SPEC = "spec"
    """The ``JobSpec`` as JSON."""
    OWNER = "owner"
    """The tenant (API key name) that submitted it."""
    STATUS = "status"
    """queued, running, done, failed or dead."""
    ATTEMPTS = "attempts"
    """Deliveries started so far (``START`` counts them; past ``TTA_MAX_ATTEMPTS``: dead)."""
    CREATED_MS = "created_ms"
    """Submission time, ms since the epoch."""
    N_IMAGES = "n_images"
    """Images in the job; it is done when that many results are written."""
    DEADLINE_MS = "deadline_ms"
    """A job not started by then fails (``deadline_exceeded``)."""
    WORKER = "worker"
    """The worker that started the latest attempt."""
    STARTED_MS = "started_ms"
    """When the latest attempt started."""
    FINISHED_MS = "finished_ms"
    """When the job ended (done, failed or dead)."""
    ERROR = "error"
    """The error payload (JSON) of a failed or dead job."""


class EntryField:
    """A jobs-stream entry (``Keys.jobs``): which job, and whose (a worker starts it without
    reading the job first); a small job's entry carries the job itself."""

    JOB_ID = "job_id"
    """The job to run."""
    OWNER = "owner"
    """Its tenant, for the job's keys (in-flight set, rectification log)."""
    SPEC = "spec"
    """A small job only (``Producer.CARRY_MAX_BYTES``): its ``JobSpec``, so a worker woken by
    the entry can run it before its START reply is back (``Consumer.start_early``)."""
    CREATED_MS = "created_ms"
    """A small job only: its submission time."""
    IMAGE_PREFIX = "image:"
    """A small job only: each image's bytes, in a field named this prefix and its index."""


class EventField:
    """A job's events stream (``Keys.events``)."""

    EVENT = "event"
    """The event's name (``queued``, ``started``, ``zeroshot``, ``progress``, ``result``, ``error``)."""
    DATA = "data"
    """Its payload, JSON."""


LUA_NAMES = {
    **{f"job_{name.lower()}": value for name, value in vars(JobField).items() if name.isupper()},
    **{f"entry_{name.lower()}": value for name, value in vars(EntryField).items() if name.isupper()},
    **{f"event_{name.lower()}": value for name, value in vars(EventField).items() if name.isupper()},
}
"""What the scripts write as ``$job_status``, ``$entry_owner``, ``$event_data`` ..."""
