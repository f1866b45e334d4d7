"""Field names of what the queue keeps in Redis: the job hash, a jobs-stream entry, an event.
Python reads them by these names and the Lua scripts are written with them
(``service.queue.scripts`` substitutes them in), so the two cannot drift apart."""

from __future__ import annotations


class JobField:
    """The job hash (``Keys.job``)."""

    SPEC = "spec"
    """The ``JobSpec`` as JSON."""
    OWNER = "owner"
    STATUS = "status"
    """queued, running, done, failed or dead."""
    ATTEMPTS = "attempts"
    CREATED_MS = "created_ms"
    N_IMAGES = "n_images"
    DEADLINE_MS = "deadline_ms"
    WORKER = "worker"
    STARTED_MS = "started_ms"
    FINISHED_MS = "finished_ms"
    ERROR = "error"
    """The error payload (JSON) of a failed or dead job."""


class EntryField:
    """A jobs-stream entry (``Keys.jobs``): which job, and whose (a worker starts it without
    reading the job first)."""

    JOB_ID = "job_id"
    OWNER = "owner"


class EventField:
    """A job's events stream (``Keys.events``)."""

    EVENT = "event"
    DATA = "data"


LUA_NAMES = {
    **{f"job_{name.lower()}": value for name, value in vars(JobField).items() if name.isupper()},
    **{f"entry_{name.lower()}": value for name, value in vars(EntryField).items() if name.isupper()},
    **{f"event_{name.lower()}": value for name, value in vars(EventField).items() if name.isupper()},
}
"""What the scripts write as ``$job_status``, ``$entry_owner``, ``$event_data`` ..."""
