"""Turning a classify request (multipart or JSON) into a validated submission: labels, method,
options and every image are checked here, before anything is queued."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from adapters.requests import PreparedRequest, prepare_request
from models.errors import InvalidInputError
from models.images import ImageTooLargeError, decode_image
from models.labels import parse_label_text
from service.api.body_limit import BodyTooLarge
from service.api.schemas import ClassifyBody
from service.errors import MalformedRequestError, TooManyImagesError
from service.settings import Settings

FORM_FIELDS = ("image", "labels", "label_set", "method", "top_k", "options", "templates", "seed")


@dataclass(frozen=True)
class Submission:
    images: list[bytes]
    labels: list[str] | None
    label_set: str | None
    method: str
    top_k: int
    options: dict[str, Any]
    templates: str | list[str] | None
    seed: int


async def read_submission(request: Request, settings: Settings) -> Submission:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _from_multipart(request, settings)
    if content_type in ("application/json", ""):
        return await _from_json(request)
    raise MalformedRequestError(
        f"unsupported content type {content_type!r}; send multipart/form-data or application/json",
        field="Content-Type")


async def _from_json(request: Request) -> Submission:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedRequestError(f"body is not valid JSON: {exc}", field="body") from exc
    try:
        body = ClassifyBody.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInputError(f"{field}: {first['msg']}", field=field) from exc
    images = [_b64(value, index) for index, value in enumerate(body.images)]
    labels = parse_label_text(body.labels) if isinstance(body.labels, str) else body.labels
    return Submission(images, labels, body.label_set, body.method, body.top_k, body.options,
                      body.templates, body.seed)


def _b64(value: str, index: int) -> bytes:
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"images[{index}] is not valid base64", field=f"images[{index}]") from exc


async def _from_multipart(request: Request, settings: Settings) -> Submission:
    try:
        form = await request.form(max_files=settings.max_images_per_request + 1,
                                  max_fields=settings.max_labels + len(FORM_FIELDS),
                                  max_part_size=1024 * 1024)
    except BodyTooLarge:
        raise
    except Exception as exc:  # Starlette raises HTTPException/MultiPartException on broken bodies
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise MalformedRequestError(f"malformed multipart body: {detail}", field="body") from exc
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown form field {unknown[0]!r}; allowed: {', '.join(FORM_FIELDS)}",
                                field=unknown[0])
    images = []
    for index, item in enumerate(form.getlist("image")):
        if not isinstance(item, UploadFile):
            raise InvalidInputError(f"images[{index}] must be a file part", field=f"images[{index}]")
        images.append(await item.read(settings.max_image_bytes + 1))
    labels_values = [str(v) for v in form.getlist("labels")]
    labels = parse_label_text(labels_values[0]) if len(labels_values) == 1 else labels_values or None
    options = _json_field(form.get("options"), "options", dict) or {}
    templates_raw = form.get("templates")
    templates: str | list[str] | None = None
    if templates_raw is not None:
        text = str(templates_raw)
        templates = _json_field(text, "templates", list) if text.lstrip().startswith("[") else text
    return Submission(
        images=images, labels=labels, label_set=_text(form.get("label_set")),
        method=_text(form.get("method")) or "zeroshot",
        top_k=_int_field(form.get("top_k"), "top_k", 5), options=options, templates=templates,
        seed=_int_field(form.get("seed"), "seed", 0),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_field(value: Any, field: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError as exc:
        raise InvalidInputError(f"{field} must be an integer, got {str(value)[:40]!r}", field=field) from exc


def _json_field(value: Any, field: str, kind: type) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{field} must be JSON ({kind.__name__})", field=field) from exc
    if not isinstance(parsed, kind):
        raise InvalidInputError(f"{field} must be a JSON {kind.__name__}", field=field)
    return parsed


def validate_request(submission: Submission, labels: list[str], settings: Settings,
                     has_reward_model: bool, has_mllm: bool) -> PreparedRequest:
    if not 0 <= submission.seed < 2**31:
        raise InvalidInputError("seed must be between 0 and 2**31 - 1", field="seed")
    return prepare_request(submission.method, labels, options=submission.options,
                           templates=submission.templates, top_k=submission.top_k,
                           has_reward_model=has_reward_model, has_mllm=has_mllm,
                           max_labels=settings.max_labels)


async def check_images(images: list[bytes], settings: Settings) -> None:
    """Every image must be within the byte and pixel limits and decode completely; done in a
    thread so a large decode never stalls the event loop."""
    if not images:
        raise InvalidInputError("at least one image is required", field="images")
    if len(images) > settings.max_images_per_request:
        raise TooManyImagesError(
            f"{len(images)} images in one request; at most {settings.max_images_per_request}",
            field="images")
    for index, data in enumerate(images):
        field = f"images[{index}]"
        if len(data) > settings.max_image_bytes:
            raise ImageTooLargeError(f"{field} is larger than {settings.max_image_bytes} bytes",
                                     field=field)
        await run_in_threadpool(decode_image, data, field=field, max_pixels=settings.max_image_pixels)
