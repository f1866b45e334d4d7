"""Fine-tuning over HTTP: start a fine-tune of the policy on a label set's retained images and
answers, follow it (the job's SSE stream), cancel it; opt a label set into image retention;
point a label set at a model version and back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from contract.errors import InUseError, InvalidInputError
from contract.finetune_params import params_from
from service.api.errors import ERROR_RESPONSES, IN_USE, QUOTA_EXCEEDED
from service.api.model_pointers import move_pointer, pinned_model, pointer_view
from service.api.routes_jobs import job_out
from service.api.schemas import LABEL_SET_NAME, json_integer
from service.api.state import AppState
from service.api.tenancy import Caller, caller
from service.queue.keys import TrainingKeys
from service.queue.labelsets import LabelSet
from service.queue.schemas import FINISHED, JobSpec, as_text, new_job_id, now_ms
from service.queue.training import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DAYS,
    MAX_TRAINING_IMAGES,
    Retention,
    TrainingFilter,
    parse_record,
)

router = APIRouter(prefix="/v1", tags=["fine-tuning"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {
    "description": "Unknown (or another key's) label set, fine-tune or version",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}}
WITH_BODY = {**NOT_FOUND, 400: ERROR_RESPONSES[400]}
"""Routes that read a JSON body: a broken one is a 400."""
EpochMs = Annotated[int, Field(ge=0, le=2**53), BeforeValidator(json_integer)]
TrainingImages = Annotated[int, Field(ge=2, le=MAX_TRAINING_IMAGES), BeforeValidator(json_integer)]
RetainedBytes = Annotated[int, Field(ge=1024, le=2**50), BeforeValidator(json_integer)]
FINETUNE_DEADLINE_S = 24 * 3600
"""A fine-tune may wait behind classify jobs for long; it is not a request someone waits on."""


class FinetuneBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{
        "label_set": "world-25", "source": "rlcf-tune", "changed_only": False, "min_score": 0.5,
        "hyperparameters": {"lr": 1e-4, "epochs": 3}}]})

    label_set: str = Field(pattern=LABEL_SET_NAME)
    source: Literal["mllm", "rlcf", "rlcf-tune", "tpt", "any"] = Field(
        "any", description="whose answers to train on: the mllm rectification decisions, or the "
                           "corrected results of rlcf / rlcf-tune / tpt jobs on the label set")
    changed_only: bool = Field(False, description="only answers that changed the zero-shot label")
    min_score: float | None = Field(None, ge=0, le=1,
                                    description="minimum answer confidence (mllm: gate score)")
    since_ms: EpochMs | None = Field(None, description="only answers at or after (epoch ms)")
    until_ms: EpochMs | None = Field(None, description="only answers at or before (epoch ms)")
    max_images: TrainingImages = Field(MAX_TRAINING_IMAGES,
                            description="newest matching answers first, up to this many")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="contract.finetune_params.FinetuneParams fields "
                                          "(lr, lr_min, weight_decay, epochs, batch_size, params, ...)")
    from_model: str | None = Field(
        None, description="the model to start from: a version (NAME@VERSION) from /v1/models, or "
                          "\"base\"; default: the version the label set points at (the base if none), "
                          "so successive fine-tunes build on each other")


class RetentionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool
    max_bytes: RetainedBytes = Field(DEFAULT_MAX_BYTES,
                               description="oldest images go first beyond")
    max_days: float = Field(DEFAULT_MAX_DAYS, gt=0, le=36500, description="images older than this go")


class ModelPointerBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = Field(description="a version from /v1/models (NAME@VERSION); null: the base")


FINETUNE_OPTIONS = ("filter", "max_images", "hyperparameters")
"""What a fine-tune job's request holds besides its labels and templates."""


def finetune_options(flt: TrainingFilter, body: FinetuneBody) -> dict[str, Any]:
    return {"filter": flt.__dict__, "max_images": body.max_images, "hyperparameters": body.hyperparameters}


async def count_matching(state: AppState, tk: TrainingKeys, flt: TrainingFilter, labels: list[str]) -> int:
    client = state.producer.client
    known = set(labels)
    count = 0
    cursor = 0
    while True:
        cursor, chunk = await client.hscan(tk.meta, cursor, count=500)
        count += sum(1 for raw in chunk.values()
                     if (r := parse_record(raw)).get("after") in known and flt.accepts(r))
        if cursor == 0:
            return count


async def starting_model(who: Caller, label_set: LabelSet, requested: str | None) -> str | None:
    """The version a fine-tune starts from (None: the base model)."""
    if requested == "base":
        return None
    start = requested if requested is not None else await pinned_model(who.state, label_set)
    if start is not None:
        await who.version(start, field="from_model")
    return start


@router.post("/finetunes", status_code=202,
             responses={**ERROR_RESPONSES, **NOT_FOUND, **QUOTA_EXCEEDED})
async def create_finetune(request: Request, body: FinetuneBody) -> JSONResponse:
    """Fine-tune the policy's visual encoder on the label set's retained answers; a worker runs
    it as a job (progress on ``events_url``) and stores the result as a new model version."""
    who = caller(request)
    state, owner = who.state, who.owner
    label_set = await who.label_set(body.label_set, shared=False)
    try:
        params = params_from(body.hyperparameters)
    except ValueError as exc:
        raise InvalidInputError(str(exc), field="hyperparameters") from exc
    flt = TrainingFilter(source=body.source, changed_only=body.changed_only, min_score=body.min_score,
                         since_ms=body.since_ms, until_ms=body.until_ms)
    tk = who.training_keys(label_set)
    matching = await count_matching(state, tk, flt, label_set.labels)
    if matching < 2:
        retention = Retention.decode(await state.producer.client.hgetall(tk.retention))
        hint = "" if retention.enabled else (" (retention is off for this label set: "
                                             f"PUT /v1/label-sets/{label_set.name}/retention)")
        raise InvalidInputError(f"{matching} retained answers of label set {label_set.name!r} match "
                                f"the filter; at least 2 are needed{hint}", field="label_set")
    images = min(matching, body.max_images)
    budget = state.settings.max_finetune_image_epochs
    if images * params.epochs > budget:
        raise InvalidInputError(
            f"{images} images x {params.epochs} epochs is more than this deployment's {budget} per "
            "fine-tune; lower hyperparameters.epochs or max_images", field="hyperparameters.epochs")
    start = await starting_model(who, label_set, body.from_model)
    created = now_ms()
    spec = JobSpec(
        job_id=new_job_id(), kind="finetune", owner=owner, model=start,
        label_set=label_set.name, label_set_version=label_set.version,
        request={"method": "finetune", "labels": label_set.labels, "templates": label_set.templates,
                 **finetune_options(flt, body)},
        n_images=1, created_ms=created, deadline_ms=created + FINETUNE_DEADLINE_S * 1000)
    await who.reserve_finetune(spec.job_id)
    await state.producer.enqueue(spec, [], max_depth=state.settings.max_queue_depth,
                                 max_inflight=state.settings.max_inflight_per_key)
    return JSONResponse({
        "finetune_id": spec.job_id, "status": "queued", "matching_images": images,
        "job_url": f"/v1/finetunes/{spec.job_id}", "events_url": f"/v1/jobs/{spec.job_id}/events",
    }, status_code=202, headers={"Location": f"/v1/finetunes/{spec.job_id}"})


async def owned_finetune(who: Caller, finetune_id: str) -> dict[str, Any]:
    view = await who.job(finetune_id, kind="finetune", field="finetune_id")
    out = job_out(view)
    result = out["results"][0]
    return {"finetune_id": finetune_id, "status": view.status, "attempts": view.attempts,
            "label_set": view.spec.label_set,
            "options": {key: view.spec.request.get(key) for key in FINETUNE_OPTIONS}, "error": view.error,
            "model": result.get("model") if result else None, "result": result,
            "events_url": f"/v1/jobs/{finetune_id}/events"}


@router.get("/finetunes/{finetune_id}", responses=NOT_FOUND)
async def get_finetune(request: Request, finetune_id: str) -> dict[str, Any]:
    """Status of a fine-tune; when done, the new version's name, manifest and metrics."""
    return await owned_finetune(caller(request), finetune_id)


@router.delete("/finetunes/{finetune_id}", status_code=202, responses=NOT_FOUND)
async def cancel_finetune(request: Request, finetune_id: str) -> dict[str, Any]:
    """Ask the worker to stop (it checks before every step); the job ends with an ``error``
    event, code ``cancelled``. A finished fine-tune is left as it is."""
    who = caller(request)
    current = await owned_finetune(who, finetune_id)
    if current["status"] in FINISHED:
        return {**current, "cancel_requested": False}
    await who.client.set(who.state.keys.finetune_cancel(finetune_id), 1, ex=who.state.settings.job_ttl_s)
    return {**current, "cancel_requested": True}


async def _retention_view(state: AppState, tk: TrainingKeys) -> dict[str, Any]:
    client = state.producer.client
    retention = Retention.decode(await client.hgetall(tk.retention))
    stored = await client.get(tk.bytes)
    return {"enabled": retention.enabled, "max_bytes": retention.max_bytes, "max_days": retention.max_days,
            "images": await client.zcard(tk.order), "bytes": int(stored or 0)}


async def own_label_set(request: Request, name: str) -> tuple[Caller, TrainingKeys]:
    """The caller, and the fine-tuning keys of its own label set ``name`` (404 if it has none;
    a bundled set is not its to change)."""
    who = caller(request)
    return who, who.training_keys(await who.label_set(name, shared=False, field="name"))


@router.put("/label-sets/{name}/retention", responses={**WITH_BODY, **QUOTA_EXCEEDED})
async def set_retention(request: Request, name: str, body: RetentionBody) -> dict[str, Any]:
    """Opt a label set in (or out) of keeping its requests' images and answers for fine-tuning.
    Turning it off keeps what is stored until it ages out; nothing new is kept."""
    who, tk = await own_label_set(request, name)
    await who.require_room_for_retention(name, body.max_bytes)
    await who.client.hset(tk.retention, mapping=Retention(body.enabled, body.max_bytes,
                                                          body.max_days).encode())
    return await _retention_view(who.state, tk)


@router.get("/label-sets/{name}/retention", responses=NOT_FOUND)
async def get_retention(request: Request, name: str) -> dict[str, Any]:
    who, tk = await own_label_set(request, name)
    return await _retention_view(who.state, tk)


@router.put("/label-sets/{name}/model", responses=WITH_BODY)
async def point_label_set(request: Request, name: str,
                          body: Annotated[ModelPointerBody, Body()]) -> dict[str, Any]:
    """Answer this label set's requests with a fine-tuned version (null: the base model again).
    The previous pointer is kept in ``history``; ``POST .../model/rollback`` returns to it."""
    who, tk = await own_label_set(request, name)
    if body.model is not None:
        await who.version(body.model)
    await move_pointer(who.state, tk, body.model)
    return await pointer_view(who.state, tk, name)


@router.post("/label-sets/{name}/model/rollback", responses=NOT_FOUND)
async def rollback_label_set(request: Request, name: str) -> dict[str, Any]:
    """Point the label set back at the model it used before the last change."""
    who, tk = await own_label_set(request, name)
    previous = await who.client.lpop(tk.model_history)
    if previous is None:
        raise InvalidInputError(f"label set {name!r} has no earlier model to roll back to", field="name")
    if as_text(previous):
        await who.client.set(tk.model, previous)
    else:
        await who.client.delete(tk.model)
    return await pointer_view(who.state, tk, name)


@router.get("/label-sets/{name}/model", responses=NOT_FOUND)
async def get_label_set_model(request: Request, name: str) -> dict[str, Any]:
    who, tk = await own_label_set(request, name)
    return await pointer_view(who.state, tk, name)


@router.delete("/models/{name:path}", responses={**NOT_FOUND, **IN_USE})
async def delete_version(request: Request, name: str) -> dict[str, Any]:
    """Unregister one of this key's fine-tuned versions: no request can name it any more, and
    it no longer counts against the key's quota. Refused (409) while a label set points at it."""
    who = caller(request)
    await who.version(name)
    for label_set in await who.label_sets():
        if label_set.owner == who.owner and await pinned_model(who.state, label_set) == name:
            raise InUseError(f"label set {label_set.name!r} points at {name!r}; point it elsewhere "
                             f"first (PUT /v1/label-sets/{label_set.name}/model)", field="name")
    await who.client.hdel(who.state.keys.versions(who.owner), name)
    return {"model": name, "deleted": True}
