"""Classification jobs: submit (waiting, streaming or not), status, and event streams."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from contract.catalog import get_spec
from contract.errors import NoCapableWorkerError
from service.api import metrics
from service.api.errors import ERROR_RESPONSES, STATUS_BY_JOB_ERROR, error_body
from service.api.intake import MULTIPART_SCHEMA, check_images, method_request, read_submission
from service.api.json_response import FastJSONResponse
from service.api.label_sets import require_exemplars, resolve_labels
from service.api.model_pointers import pinned_model
from service.api.schemas import (
    ClassifyBody,
    ImageResult,
    JobAccepted,
    JobOut,
    ScoredLabelOut,
)
from service.api.sse import follow, stream_events
from service.api.state import AppState, app_state
from service.api.tenancy import Caller, caller
from service.queue.producer import JobView
from service.queue.routing import serves
from service.queue.schemas import FINISHED, JobSpec, QueueEvent, new_job_id, now_ms

router = APIRouter(prefix="/v1", tags=["classification"])
STREAM_ID = re.compile(r"^(\d{1,19}-\d{1,19}|0)?$")
"""A Redis stream id (19 digits keep each part below 2**64, which Redis refuses past); empty:
none given (a plain string with a default, not a nullable one: a client that sends a header
it does not have sends nothing, not "null")."""
NO_WORKER_RETRY_AFTER_S = 5
ADMISSION_WORKERS_MAX_AGE_S = 0.5
"""How old the list of live workers that admits a request may be (a refusal re-reads it)."""
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ClassifyBody"},
                         "example": ClassifyBody.model_config["json_schema_extra"]["examples"][0]},  # type: ignore[index]
    "multipart/form-data": {"schema": MULTIPART_SCHEMA},
}}}


async def submit(request: Request, job_id: str | None = None) -> tuple[AppState, JobSpec, str]:
    """Validate the whole request, then queue it as one job (all its images, in order) under
    ``job_id`` (default: a new one); the id of its ``queued`` event comes last."""
    who = caller(request)
    state = who.state
    settings = state.settings
    submission = await read_submission(request, settings)
    labels, label_set = await resolve_labels(who, submission)
    request_ = method_request(submission, labels, settings)
    spec = get_spec(request_.method)
    if spec.needs_exemplars:
        require_exemplars(spec.name, label_set)
    images = await check_images(submission.images, settings)
    # The request's model, else a fine-tuned version its label set points at (routes_finetunes).
    model = await who.model(submission.fields.model) or await pinned_model(state, label_set)
    await require_capable_worker(state, request_.methods_called, model)
    created = now_ms()
    job = JobSpec(
        job_id=job_id or new_job_id(), owner=who.owner, model=model,
        label_set=label_set.name if label_set else None,
        label_set_version=label_set.version if label_set else None,
        label_set_owner=label_set.owner if label_set and label_set.owner != who.owner else None,
        request=request_.wire(), n_images=len(submission.images), created_ms=created,
        deadline_ms=created + settings.job_deadline_s * 1000,
    )
    queued = await state.producer.enqueue(job, images, max_depth=settings.max_queue_depth,
                                          max_inflight=settings.max_inflight_per_key)
    metrics.JOBS_SUBMITTED.labels(job.method).inc()
    return state, job, queued


async def require_capable_worker(state: AppState, methods: Sequence[str], model: str | None) -> None:
    """Refuse now (503 no_capable_worker) what no live worker can run (the request's method and
    those it calls), rather than queue a job that would wait for its deadline or be failed by a
    worker; the message says what is missing."""
    workers = await state.producer.live_workers(max_age_s=ADMISSION_WORKERS_MAX_AGE_S)
    if any(all(serves(worker, m, model) for m in methods) for worker in workers):
        return
    scaled = {m.strip() for m in state.settings.scale_to_zero_methods.split(",") if m.strip()}
    if "*" in scaled or set(methods) <= scaled:
        return  # its workers may be scaled to zero: the queued job is what scales them up
    workers = await state.producer.live_workers()  # a refusal is checked against a fresh list
    specs = [get_spec(m) for m in methods]
    needs = [what for what, needed in (
        ("a reward model (TTA_REWARD_MODEL)", any(s.needs_reward_model for s in specs)),
        ("an MLLM (TTA_MLLM)", any(s.needs_mllm for s in specs))) if needed]
    method = methods[0]
    calls = f" (calling {', '.join(methods[1:])})" if len(methods) > 1 else ""
    wanted = f"method {method!r}{calls}" + (f" on model {model!r}" if model else "")
    if not workers:
        reason = "no worker is live (starting, or all stopped: GET /readyz says when one is)"
    else:
        offered = sorted({f"{m} on {w.get('model')}" for w in workers for m in w.get("methods", ())})
        reason = "live workers serve: " + ", ".join(offered)
    # (what the method needs is a hint only when live workers lack it)
    hint = f"; it needs a worker with {' and '.join(needs)}" if needs and workers else ""
    raise NoCapableWorkerError(f"no live worker can run {wanted}: {reason}{hint}",
                               retry_after_s=NO_WORKER_RETRY_AFTER_S)


CLASSIFY_RESULT_KEYS = frozenset(ImageResult.model_fields) - {"image"}
"""The fields of a classify image's stored result (``AdaptationResult.to_dict``)."""
SCORED_LABEL_KEYS = frozenset(ScoredLabelOut.model_fields)


def job_out(view: JobView) -> dict[str, Any]:
    """The job as ``JobOut`` shows it. A classify job whose results are stored exactly as
    ``ImageResult`` has them (every classify job) is laid out directly: validating it through
    ``JobOut`` was about 40 us of every waiting classify's answer. Anything else (a label set's
    preparation, a fine-tune, a result of another shape) goes through the model, which drops
    what the schema does not name."""
    results: list[dict[str, Any] | None] = [None] * view.spec.n_images
    for index, result in view.results.items():
        results[index] = {"image": index, **result}
    out = {"job_id": view.job_id, "kind": view.spec.kind, "status": view.status, "method": view.spec.method,
           "n_images": view.spec.n_images, "attempts": view.attempts, "labels": view.spec.labels,
           "label_set": view.spec.label_set, "results": results, "error": view.error}
    if view.spec.kind == "classify" and all(_is_image_result(result) for result in view.results.values()):
        return out
    return JobOut.model_validate(out).model_dump()


def _is_image_result(result: dict[str, Any]) -> bool:
    return (result.keys() == CLASSIFY_RESULT_KEYS and isinstance(result["metrics"], dict)
            and isinstance(result["label"], str) and isinstance(result["changed"], bool)
            and isinstance(result["score"], float)
            and all(isinstance(scored, dict) and scored.keys() == SCORED_LABEL_KEYS
                    and isinstance(scored["label"], str) and isinstance(scored["score"], float)
                    for key in ("top_k", "zeroshot_top_k") for scored in result[key]))


def accepted(job: JobSpec, status: str = "queued") -> JSONResponse:
    body = JobAccepted(job_id=job.job_id, status=status, job_url=f"/v1/jobs/{job.job_id}",
                       events_url=f"/v1/jobs/{job.job_id}/events")
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": body.job_url})


@router.post("/classify", openapi_extra=REQUEST_BODY, responses={
    200: {"model": JobOut, "description": "Done: one result per image, in order"},
    202: {"model": JobAccepted, "description": "Still running after the wait bound; poll job_url"},
    **ERROR_RESPONSES,
})
async def classify(request: Request) -> Response:
    """Classify images and wait for the corrected predictions (up to TTA_WAIT_TIMEOUT_S).
    With ``Accept: text/event-stream`` the job's events stream back instead (SSE)."""
    if "text/event-stream" in request.headers.get("accept", ""):
        state, job, _ = await submit(request)
        stream = stream_events(state.producer, state.hub, job.job_id, "0", state.settings.sse_ping_s)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={**SSE_HEADERS, "X-Job-ID": job.job_id})
    job_id = new_job_id()
    # Followed before it is queued, the job's events all reach this request through the hub,
    # and its stream need not be read; it wakes once, at the job's end.
    async with app_state(request).hub.subscribe(job_id, until_terminal=True) as subscription:
        state, job, queued = await submit(request, job_id)
        seen: list[QueueEvent] = []

        async def until_terminal() -> None:
            async for event in follow(state.producer, state.hub, job.job_id, queued,
                                      state.settings.sse_ping_s, subscription):
                if event is not None:
                    seen.append(event)
                    if event.is_terminal:
                        return

        try:
            await asyncio.wait_for(until_terminal(), state.settings.wait_timeout_s)
        except TimeoutError:
            return accepted(job, status="running")
    if seen and seen[-1].is_terminal and seen[-1].event == "result":
        return FastJSONResponse(job_out(done_from_events(job, seen)))
    return await finished(state, job)


def done_from_events(job: JobSpec, events: list[QueueEvent]) -> JobView:
    """The finished job as its events after "queued" tell it: each image's result event
    carries the result as stored, and the started events the attempts. It saves the waiting
    classify a read of the job after its last event (GET /v1/jobs answers the same)."""
    results = {int(e.data["image"]): e.stored_result() for e in events if e.event == "result"}
    attempts = max((int(e.data.get("attempt", 0)) for e in events if e.event == "started"), default=0)
    return JobView(job_id=job.job_id, owner=job.owner, status="done", spec=job, attempts=attempts,
                   worker=None, error=None, results=results)


async def finished(state: AppState, job: JobSpec) -> JSONResponse:
    """The answer to a waiting classify whose job ended: its results, or its error."""
    view = await Caller(job.owner, state).job(job.job_id)
    if view.status == "done":
        return FastJSONResponse(job_out(view))
    error = view.error or {}
    code = error.get("code", "internal_error")
    return JSONResponse(error_body(code, error.get("message", "job failed"), error.get("field"),
                                   job_id=job.job_id), status_code=STATUS_BY_JOB_ERROR.get(code, 422))


@router.post("/jobs", status_code=202, openapi_extra=REQUEST_BODY,
             responses={202: {"model": JobAccepted}, **ERROR_RESPONSES})
async def create_job(request: Request) -> Response:
    """Queue a classification job and return its id at once."""
    _, job, _ = await submit(request)
    return accepted(job)


@router.get("/jobs/{job_id}", response_model=JobOut, response_class=FastJSONResponse,
            responses={404: ERROR_RESPONSES[422] | {"description": "Unknown, expired or another key's job"}})
async def get_job(request: Request, job_id: str) -> Response:
    """Status of a job and, as images finish, their results."""
    view = await caller(request).job(job_id)
    return FastJSONResponse(job_out(view))


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description":
          "SSE: queued, started, zeroshot, progress, result (one per image; the last has "
          "final: true), error"},
    204: {"description": "The job finished and there is nothing after Last-Event-ID"},
    404: ERROR_RESPONSES[422] | {"description": "Unknown, expired or another key's job"},
})
async def job_events(
    request: Request, job_id: str,
    last_event_id: Annotated[str, Header(
        alias="Last-Event-ID", pattern=STREAM_ID.pattern,
        description="resume after this event id: the `id:` of an event already seen, "
                    "like 1700000000000-0 (`0`: from the start)")] = "",
    after: Annotated[str, Query(pattern=STREAM_ID.pattern,
                                description="the same as Last-Event-ID, as a query parameter")] = "",
) -> Response:
    """The job's events from the start, or after ``Last-Event-ID`` (any API replica resumes).
    A finished job with nothing after the given id answers 204, which also tells a browser's
    EventSource to stop reconnecting."""
    who = caller(request)
    state = who.state
    view = await who.job(job_id)
    resume = last_event_id or after or "0"
    if view.status in FINISHED and not await state.producer.events(job_id, resume, block_ms=None, count=1):
        return Response(status_code=204)
    stream = stream_events(state.producer, state.hub, job_id, resume, state.settings.sse_ping_s)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

