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
from starlette.datastructures import FormData, UploadFile

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
    images = [decode_base64(value, f"images[{index}]") for index, value in enumerate(body.images)]
    labels = parse_label_text(body.labels) if isinstance(body.labels, str) else body.labels
    return Submission(images, labels, body.label_set, body.method, body.top_k, body.options,
                      body.templates, body.seed)


def decode_base64(value: str, field: str) -> bytes:
    """Image bytes from base64 (a ``data:`` URL prefix is accepted)."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{field} is not valid base64", field=field) from exc


async def read_form(request: Request, *, max_files: int, max_fields: int) -> FormData:
    try:
        return await request.form(max_files=max_files, max_fields=max_fields, max_part_size=1024 * 1024)
    except BodyTooLarge:
        raise
    except Exception as exc:  # Starlette raises HTTPException/MultiPartException on broken bodies
        detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise MalformedRequestError(f"malformed multipart body: {detail}", field="body") from exc


def templates_field(value: Any) -> str | list[str] | None:
    """A form's ``templates``: a set name, or a JSON list of format strings."""
    if value is None:
        return None
    text = str(value)
    return json_field(text, "templates", list) if text.lstrip().startswith("[") else text


async def _from_multipart(request: Request, settings: Settings) -> Submission:
    form = await read_form(request, max_files=settings.max_images_per_request + 1,
                           max_fields=settings.max_labels + len(FORM_FIELDS))
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
    options = json_field(form.get("options"), "options", dict) or {}
    return Submission(
        images=images, labels=labels, label_set=_text(form.get("label_set")),
        method=_text(form.get("method")) or "zeroshot",
        top_k=_int_field(form.get("top_k"), "top_k", 5), options=options,
        templates=templates_field(form.get("templates")),
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


def json_field(value: Any, field: str, kind: type) -> Any:
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


async def check_images(images: list[bytes], settings: Settings, *, max_count: int | None = None,
                       field: str = "images") -> None:
    """Every image must be within the byte and pixel limits and decode completely; done in a
    thread so a large decode never stalls the event loop."""
    limit = max_count or settings.max_images_per_request
    if not images:
        raise InvalidInputError("at least one image is required", field=field)
    if len(images) > limit:
        raise TooManyImagesError(f"{len(images)} images in {field}; at most {limit}", field=field)
    for index, data in enumerate(images):
        name = f"{field}[{index}]"
        if len(data) > settings.max_image_bytes:
            raise ImageTooLargeError(f"{name} is larger than {settings.max_image_bytes} bytes",
                                     field=name)
        await run_in_threadpool(decode_image, data, field=name, max_pixels=settings.max_image_pixels)
