"""What travels through Redis: the job spec, job status, and events (torch-free)."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from typing import Any, Literal

import orjson
from pydantic import BaseModel, model_validator

from contract.request import MethodRequest, normalize
from service.queue.fields import EventField

EventName = Literal["queued", "started", "zeroshot", "progress", "result", "error"]
EVENT_NAMES: tuple[str, ...] = ("queued", "started", "zeroshot", "progress", "result", "error")
JobStatus = Literal["queued", "running", "done", "failed", "dead"]
FINISHED: tuple[str, ...] = ("done", "failed", "dead")
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


JobKind = Literal["classify", "prepare_label_set", "finetune"]


class JobSpec(BaseModel):
    """Everything a worker needs to run a job, besides the image bytes. Labels are resolved
    at submission (a label set edited later does not change a queued job)."""

    job_id: str
    kind: JobKind = "classify"
    """"prepare_label_set": estimate the label set's transition matrix (no images); "finetune":
    train a model version on the label set's retained images (service/worker/finetune_job.py)."""
    owner: str
    model: str | None = None
    """Policy model the request pinned, or the fine-tuned version (NAME@VERSION) its label set
    points at (only workers holding the base model get the job); None: any."""
    label_set: str | None = None
    label_set_version: str | None = None
    label_set_owner: str | None = None
    """Whose label set it is when not the job's owner's: a bundled one (``SHARED_OWNER``)."""
    request: dict[str, Any]
    """A classify job: its normalised request (``contract.request.MethodRequest.wire``). A
    label set's preparation: its labels and templates. A fine-tune: those, and its filter,
    image bound and hyperparameters."""
    n_images: int
    created_ms: int
    deadline_ms: int

    @model_validator(mode="before")
    @classmethod
    def _from_an_older_release(cls, data: Any) -> Any:
        """A job queued before jobs carried their normalised request (its fields were spread
        out, its options raw): read into one, normalised when it runs (``method_request``)."""
        if isinstance(data, dict) and "request" not in data and "labels" in data:
            data = dict(data)
            data["request"] = {name: data.pop(name) for name in LEGACY_REQUEST_FIELDS if name in data}
            data["request"]["raw"] = True
        return data

    @property
    def method(self) -> str:
        return str(self.request.get("method", self.kind))

    @property
    def labels(self) -> list[str]:
        return list(self.request["labels"])

    @property
    def templates(self) -> str | list[str]:
        templates: str | list[str] = self.request.get("templates", "single")
        return templates

    def method_request(self) -> MethodRequest:
        """The classify job's request, as the method takes it."""
        if self.request.get("raw"):
            request = self.request
            return normalize(request["method"], request["labels"], options=request.get("options"),
                             templates=request.get("templates"), top_k=request.get("top_k", 5),
                             seed=request.get("seed", 0))
        return MethodRequest.from_wire(self.request)

    @property
    def label_set_owned_by(self) -> str:
        """The owner of the job's label set: its own owner's, or a bundled one's."""
        return self.label_set_owner or self.owner


LEGACY_REQUEST_FIELDS = ("method", "labels", "templates", "top_k", "options", "seed")


RESULT_EVENT_FIELDS = frozenset({"job_id", "image", "n_images", "final"})
"""What a ``result`` event adds to the image's stored result."""


class QueueEvent(BaseModel):
    id: str
    """Stream entry id: the SSE ``id:`` and what ``Last-Event-ID`` resumes from."""
    event: str
    data: dict[str, Any]

    def stored_result(self) -> dict[str, Any]:
        """A ``result`` event's image result as it is stored: the event is the result with
        the job's fields around it (``Consumer.finish_image``)."""
        return {key: value for key, value in self.data.items() if key not in RESULT_EVENT_FIELDS}

    @property
    def is_terminal(self) -> bool:
        """The job's last event: an error, or the result that completed the last image."""
        return self.event == "error" or (self.event == "result" and bool(self.data.get("final")))


def as_text(value: Any) -> str:
    """A Redis reply value (bytes from redis-py) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON, with NaN and infinities as null (orjson writes them so). orjson: a
    result's JSON is written three times (the result and its two possible events), which cost
    the worker about 0.1 ms per image with the standard library. What orjson refuses (an
    integer past 64 bits, an unusual type) goes through the standard library instead."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(finite(value), separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes) -> Any:
    """JSON written by ``dumps`` (or by Redis's cjson) back to values."""
    return orjson.loads(text)


def error_payload(job_id: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "code": code, "message": message, **extra}


def parse_event_message(message: bytes | str) -> QueueEvent:
    """A published event: its stream entry id, its name and its data, a line each (the data
    is compact JSON, which has no raw newline)."""
    text = message.decode() if isinstance(message, bytes) else message
    entry_id, event, data = text.split("\n", 2)
    return QueueEvent(id=entry_id, event=event, data=loads(data))


def parse_event(entry_id: bytes | str, fields: dict[Any, Any]) -> QueueEvent:
    event = fields.get(EventField.EVENT.encode(), fields.get(EventField.EVENT))
    data = fields.get(EventField.DATA.encode(), fields.get(EventField.DATA))
    return QueueEvent(id=as_text(entry_id), event=as_text(event) if event is not None else "unknown",
                      data=loads(data) if data is not None else {})
