"""Named label sets over HTTP: create (JSON or multipart), list, show; and resolving a classify
request's ``label_set`` into its labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from contract.errors import InvalidInputError, RequestTooLargeError, RetryLaterError, TooManyImagesError
from contract.labels import LABEL_SET_NAME_PATTERN, parse_label_text, validate_labels
from contract.templates import validate_templates
from service.api.errors import ERROR_RESPONSES
from service.api.intake import (
    Submission,
    check_images,
    decode_base64,
    form_text,
    templates_field,
    too_many_labels,
)
from service.api.json_body import read_json_body
from service.api.multipart import TooManyFieldsError, read_form
from service.api.schemas import LABEL_SET_NAME, MULTIPART_TEXT
from service.api.state import AppState
from service.api.tenancy import Caller, caller
from service.queue.labelsets import (
    LABEL_SET_TEXT_FIELDS,
    MAX_EXEMPLARS_PER_CLASS,
    LabelSet,
    content_version,
    write_label_set,
)
from service.queue.schemas import JobSpec, as_text, new_job_id, now_ms

router = APIRouter(prefix="/v1/label-sets", tags=["label sets"])


LABEL_SET_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {
        "name": {"type": "string", "pattern": LABEL_SET_NAME},
        "labels": {"type": "array", "items": MULTIPART_TEXT,
                   "description": "repeated, or one comma-separated value"},
        "templates": {"type": "string", "description": "set name, or a JSON list of templates"},
    },
    "patternProperties": {"^exemplar:": {
        "type": "array", "items": {"type": "string", "format": "binary"},
        "description": "exemplar:<label>: exemplar image files of that class"}},
    "additionalProperties": False,
}


class LabelSetBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "world-25", "labels": ["kettle", "cup", "house"],
        "exemplars": {"kettle": ["<base64 PNG>"]},
    }]})

    name: str = Field(pattern=LABEL_SET_NAME, description="1-64 letters, digits, '.', '_' or '-'")
    labels: list[str]
    templates: str | list[str] | None = None
    exemplars: dict[str, list[str]] = Field(
        default_factory=dict, description="label -> base64 images (about 3 per class)")


async def resolve_labels(who: Caller, submission: Submission) -> tuple[list[str], LabelSet | None]:
    """The labels of a classify request, and the label set they came from (if any)."""
    fields = submission.fields
    if fields.label_set is not None:
        if fields.labels:
            raise InvalidInputError("give either labels or label_set, not both", field="label_set")
        label_set = await who.label_set(fields.label_set)
        return label_set.labels, label_set
    if not fields.labels:
        raise InvalidInputError("labels (or label_set) is required", field="labels")
    return parse_label_text(fields.labels) if isinstance(fields.labels, str) else fields.labels, None


def require_exemplars(method: str, label_set: LabelSet | None) -> None:
    """Methods like mllm need a label set with exemplar images for every class."""
    if label_set is None:
        raise InvalidInputError(f"method {method!r} needs a label_set with exemplar images "
                                "(POST /v1/label-sets), not plain labels", field="label_set")
    missing = [label for label, count in zip(label_set.labels, label_set.exemplar_counts, strict=True)
               if count == 0]
    if missing:
        raise InvalidInputError(
            f"method {method!r} needs exemplar images for every class; label set "
            f"{label_set.name!r} has none for {', '.join(repr(m) for m in missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}", field="label_set")


async def enqueue_preparation(state: AppState, label_set: LabelSet) -> str | None:
    """Queue the estimation of the label set's transition matrix (any worker can run it), so
    its confused pairs show up here without waiting for a first mllm request."""
    if not any(label_set.exemplar_counts):
        return None
    created = now_ms()
    spec = JobSpec(job_id=new_job_id(), kind="prepare_label_set", owner=label_set.owner,
                   label_set=label_set.name, label_set_version=label_set.version,
                   request={"method": "mllm", "labels": label_set.labels, "templates": label_set.templates},
                   n_images=1, created_ms=created, deadline_ms=created + state.settings.job_deadline_s * 1000)
    try:
        await state.producer.enqueue(spec, [], max_depth=state.settings.max_queue_depth,
                                     max_inflight=state.settings.max_inflight_per_key)
    except RetryLaterError:
        return None  # the first mllm request will estimate it instead
    return spec.job_id


@dataclass(frozen=True)
class LabelSetRequest:
    name: str
    labels: list[str]
    templates: str | list[str] | None
    exemplars: dict[str, list[bytes]]


def too_many_exemplars(limit: int) -> InvalidInputError:
    return InvalidInputError(f"more than {limit} exemplar images; at most {limit} per label set",
                             field="exemplars")


async def _read_body(request: Request, max_exemplars: int, max_labels: int) -> LabelSetRequest:
    """The body, its exemplars counted before any is decoded."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        body = await read_json_body(request, LabelSetBody)
        if sum(map(len, body.exemplars.values())) > max_exemplars:
            raise too_many_exemplars(max_exemplars)
        exemplars = {label: [decode_base64(v, f"exemplars.{label}[{j}]") for j, v in enumerate(values)]
                     for label, values in body.exemplars.items()}
        return LabelSetRequest(body.name, body.labels, body.templates, exemplars)
    try:
        form = await read_form(request, max_files=max_exemplars,
                               max_fields=max_labels + len(LABEL_SET_TEXT_FIELDS))
    except TooManyImagesError as exc:
        raise too_many_exemplars(max_exemplars) from exc
    except TooManyFieldsError as exc:
        raise too_many_labels(exc, max_labels) from exc
    files: dict[str, list[bytes]] = {}
    for key, value in form.multi_items():
        if key.startswith("exemplar:") and isinstance(value, UploadFile):
            files.setdefault(key.removeprefix("exemplar:"), []).append(await value.read())
        elif key.startswith("exemplar:"):
            raise InvalidInputError(f"{key} must be a file part", field=key)
        elif key not in LABEL_SET_TEXT_FIELDS:
            raise InvalidInputError(
                f"unknown form field {key!r}; allowed: name, labels, templates, exemplar:<label>",
                field=key)
    labels = [form_text(v, "labels") or "" for v in form.getlist("labels")]
    if len(labels) == 1:
        labels = parse_label_text(labels[0])
    return LabelSetRequest(form_text(form.get("name"), "name") or "", labels,
                           templates_field(form_text(form.get("templates"), "templates")), files)


@router.post("", status_code=201, responses=ERROR_RESPONSES)
async def create_label_set(request: Request) -> dict[str, Any]:
    """Create or replace a named label set: labels, optional templates, exemplar images per
    class (multipart: files in fields ``exemplar:<label>``)."""
    who = caller(request)
    state, owner, settings = who.state, who.owner, who.state.settings
    body = await _read_body(request, settings.max_exemplars_per_label_set, settings.max_labels)
    if not LABEL_SET_NAME_PATTERN.match(body.name):
        raise InvalidInputError("name must be 1-64 letters, digits, '.', '_' or '-'", field="name")
    await who.require_room_for_label_set(body.name)
    labels = list(validate_labels(body.labels, max_labels=state.settings.max_labels))
    try:
        templates = validate_templates(body.templates)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="templates") from exc
    index = {label: i for i, label in enumerate(labels)}
    exemplars: dict[int, list[bytes]] = {}
    for label, images in body.exemplars.items():
        if label not in index:
            raise InvalidInputError(f"exemplars for {label!r}, which is not one of the labels",
                                    field=f"exemplars.{label}")
        if len(images) > MAX_EXEMPLARS_PER_CLASS:
            raise InvalidInputError(f"at most {MAX_EXEMPLARS_PER_CLASS} exemplars per class",
                                    field=f"exemplars.{label}")
        exemplars[index[label]] = await check_images(
            images, settings, max_count=MAX_EXEMPLARS_PER_CLASS, field=f"exemplars.{label}")
        stored = sum(len(data) for kept in exemplars.values() for data in kept)
        if stored > settings.max_exemplar_bytes_per_label_set:
            raise RequestTooLargeError(
                f"the exemplars up to {label!r} take {stored} bytes as stored; at most "
                f"{settings.max_exemplar_bytes_per_label_set} per label set", field="exemplars")
    template_value = templates if isinstance(templates, str) else list(templates)
    label_set = LabelSet(
        name=body.name, owner=owner, labels=labels, templates=template_value,
        version=content_version(labels, template_value, exemplars),
        exemplar_counts=[len(exemplars.get(i, [])) for i in range(len(labels))], created_ms=now_ms(),
    )
    client = state.producer.client
    previous = await client.hget(state.keys.label_set(owner, body.name), "version")
    pipe = client.pipeline(transaction=True)
    write_label_set(pipe, state.keys, label_set, exemplars, as_text(previous) if previous else None)
    await pipe.execute()
    return {**label_set.summary(), "prepare_job_id": await enqueue_preparation(state, label_set)}


@router.delete("/{name}", responses={404: {"description": "Unknown label set, or another key's"}})
async def delete_label_set(request: Request, name: str) -> dict[str, Any]:
    """Delete one of this key's label sets with everything kept for it: exemplars, confused
    pairs, retained training images, its model pointer and its methods' online state (the
    model versions trained on it stay; jobs already queued on it fail with label_set_changed
    where they need its exemplars)."""
    who = caller(request)
    label_set = await who.label_set(name, shared=False, field="name")
    await who.delete_label_set(label_set)
    return {"name": name, "deleted": True}


@router.get("")
async def list_label_sets(request: Request) -> dict[str, Any]:
    """This key's label sets, and the bundled ones (``shared``: usable, read-only)."""
    return {"label_sets": [{k: summary[k] for k in ("name", "n_labels", "n_exemplars", "version", "shared")}
                           for summary in (s.summary() for s in await caller(request).label_sets())]}


@router.get("/{name}", responses={404: {"description": "Unknown label set, or another key's"}})
async def show_label_set(request: Request, name: str) -> dict[str, Any]:
    """One label set: classes, exemplar counts, and (once a worker has estimated the transition
    matrix from the exemplars) the most confused class pairs per model."""
    who = caller(request)
    label_set = await who.label_set(name, field="name")
    stored = await who.client.hgetall(
        who.state.keys.label_set_transition(label_set.owner, name, label_set.version))
    confusions = {as_text(model): json.loads(raw)["top_pairs"]
                  for model, raw in stored.items()}
    return {**label_set.summary(), "confused_pairs": confusions}
