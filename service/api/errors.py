"""The one place where exceptions become HTTP responses: ``{"code", "message", "field"}``."""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract.errors import (
    BackendUnavailableError,
    ImageTooLargeError,
    InUseError,
    InvalidInputError,
    MalformedRequestError,
    MissingMLLMError,
    MissingRewardModelError,
    NoCapableWorkerError,
    NotFoundError,
    NotReplicatedError,
    QueueFullError,
    QuotaExceededError,
    RequestTooLargeError,
    TooManyInflightError,
    TTAError,
    UnauthorizedError,
    UnknownMethodError,
    UnsupportedImageFormatError,
)

log = logging.getLogger(__name__)

REDIS_RETRY_AFTER_S = 2
STATUS_BY_TYPE: tuple[tuple[type[TTAError], int], ...] = (
    (UnauthorizedError, 401),
    (QuotaExceededError, 403),
    (NotFoundError, 404),
    (InUseError, 409),
    (RequestTooLargeError, 413),
    (ImageTooLargeError, 413),
    (UnsupportedImageFormatError, 415),
    (MalformedRequestError, 400),
    (InvalidInputError, 422),
    (UnknownMethodError, 422),
    (MissingRewardModelError, 422),
    (MissingMLLMError, 422),
    (TooManyInflightError, 429),
    (QueueFullError, 503),
    (NotReplicatedError, 503),
    (NoCapableWorkerError, 503),
    (BackendUnavailableError, 503),
)
STATUS_BY_JOB_ERROR = {"deadline_exceeded": 504, "dead_letter": 500, "internal_error": 500,
                       "images_expired": 410, "mllm_failed": 502}
"""HTTP status of ``POST /v1/classify`` when its job failed in the worker."""

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "model": None, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for status, description in (
        (400, "Malformed body (e.g. broken multipart, invalid JSON or UTF-8, nested too deeply)"),
        (401, "Missing or unknown API key"),
        (404, "Unknown label set (or another key's)"),
        (413, "Request, image or pixel count too large (also decompression bombs)"),
        (415, "Image format not allowed (JPEG, PNG, WebP)"),
        (422, "Invalid labels, method, options, top_k or image"),
        (429, "Too many unfinished jobs for this key (see Retry-After)"),
        (503, "Queue full, no live worker can run the method/model, Redis unavailable, or the job "
              "not confirmed by Redis's replicas in time (see Retry-After)"),
    )
}


def error_response(status: int, description: str) -> dict[str, Any]:
    """An OpenAPI response of the error body."""
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


Responses = dict[int | str, dict[str, Any]]
QUOTA_EXCEEDED: Responses = {403: error_response(
    403, "A quota of this key is used up (quota_exceeded): delete something first; GET /v1/quotas "
         "shows them")}
IN_USE: Responses = {409: error_response(409, "In use (in_use): e.g. a model version a label set "
                                              "points at")}


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    body.update(extra)
    return body


def status_for(exc: TTAError) -> int:
    for cls, status in STATUS_BY_TYPE:
        if isinstance(exc, cls):
            return status
    return 500


def tta_error_response(exc: TTAError) -> JSONResponse:
    headers: dict[str, str] = {}
    retry = getattr(exc, "retry_after_s", None)
    if isinstance(exc, BackendUnavailableError):
        retry = REDIS_RETRY_AFTER_S
    if retry is not None:
        headers["Retry-After"] = str(retry)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=status_for(exc),
                        headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(TTAError)
    async def _tta(_: Request, exc: TTAError) -> JSONResponse:
        return tta_error_response(exc)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    @app.exception_handler(redis.ResponseError)  # e.g. out of memory, or a read-only replica
    async def _redis(_: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s: %s", type(exc).__name__, exc)
        return tta_error_response(BackendUnavailableError("the queue backend (Redis) is unavailable"))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        return JSONResponse(error_body("invalid_request", first.get("msg", "invalid request"),
                                       ".".join(loc) or None), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path``, from the OpenAPI paths (routers included
    into the app are not all plain routes of ``app.routes``)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)
