"""Turning a classify request (multipart or JSON) into a validated submission: labels, method,
options and every image are checked here, before anything is queued."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from contract.errors import (
    ImageTooLargeError,
    InvalidInputError,
    InvalidLabelsError,
    MalformedRequestError,
    TooManyImagesError,
    TTAError,
)
from contract.images import header_pixels, normalize_image, probe
from contract.labels import parse_label_text
from contract.request import MethodRequest, normalize
from contract.text_safety import unsafe_character
from service.api.json_body import parse_json, read_json_body, validate_as
from service.api.multipart import TooManyFieldsError, read_form
from service.api.schemas import (
    ClassifyBody,
    ClassifyFields,
    FormDecoding,
    form_decoding,
    multipart_schema,
)
from service.settings import Settings

MAX_MODEL_NAME_CHARS = 200
FORM_DECODING = form_decoding(ClassifyFields)
FORM_FIELDS = ("image", *FORM_DECODING)
MULTIPART_SCHEMA = multipart_schema(ClassifyFields, {"image": "one or more image files (JPEG, PNG, WebP)"})

INLINE_DECODE_PIXELS = 128 * 1024
"""Images up to this size (about 360x360) are decoded on the event loop: well under a
millisecond, less than handing them to a thread costs."""


@dataclass(frozen=True)
class Submission:
    """A classify request as it arrived, JSON or multipart: its fields (checked as the schema
    says) and its image bytes (not decoded yet)."""

    fields: ClassifyFields
    images: list[bytes]


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
    body = await read_json_body(request, ClassifyBody)
    images = [decode_base64(value, f"images[{index}]") for index, value in enumerate(body.images)]
    return Submission(body, images)


def decode_base64(value: str, field: str) -> bytes:
    """Image bytes from base64 (a ``data:`` URL prefix is accepted)."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{field} is not valid base64", field=field) from exc


def templates_field(value: Any) -> str | list[str] | None:
    """A form's ``templates``: a set name, or a JSON list of format strings."""
    if value is None:
        return None
    text = str(value)
    return json_field(text, "templates", list) if text.lstrip().startswith("[") else text


async def _from_multipart(request: Request, settings: Settings) -> Submission:
    limit = settings.max_images_per_request
    try:
        form = await read_form(request, max_files=limit, max_fields=settings.max_labels + len(FORM_FIELDS),
                               too_many_files=f"more than {limit} images in images; at most {limit}")
    except TooManyFieldsError as exc:
        raise too_many_labels(exc, settings.max_labels) from exc
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:
        raise InvalidInputError(f"unknown form field {unknown[0]!r}; allowed: {', '.join(FORM_FIELDS)}",
                                field=unknown[0])
    images = []
    for index, item in enumerate(form.getlist("image")):
        if not isinstance(item, UploadFile):
            raise InvalidInputError(f"images[{index}] must be a file part", field=f"images[{index}]")
        images.append(await item.read(settings.max_image_bytes + 1))
    values: dict[str, Any] = {}
    for name, decoding in FORM_DECODING.items():
        texts = [text for text in (form_text(v, name) for v in form.getlist(name)) if text]
        if texts:  # (an empty field is one not given)
            values[name] = form_value(name, decoding, texts)
    return Submission(validate_as(ClassifyFields, values), images)


def form_value(name: str, decoding: FormDecoding, texts: list[str]) -> Any:
    """A multipart field's value, decoded as its declaration says (``schemas.FormAs``)."""
    if decoding == "comma-separated":
        return parse_label_text(texts[0]) if len(texts) == 1 else texts
    if len(texts) > 1:
        raise InvalidInputError(f"{name} is given {len(texts)} times; give it once", field=name)
    text = texts[0]
    if decoding == "integer":
        try:
            return int(text)
        except ValueError as exc:
            raise InvalidInputError(f"{name} must be an integer, got {text[:40]!r}", field=name) from exc
    if decoding == "json-object":
        return json_field(text, name, dict)
    if decoding == "json-list-or-name":
        return templates_field(text)
    return text


def too_many_labels(exc: TooManyFieldsError, max_labels: int) -> TTAError:
    """Repeated ``labels`` parts past the form's field limit: the same error as a list of too
    many labels (whatever the count), not a malformed body."""
    if exc.name != "labels":
        return exc
    return InvalidLabelsError(f"too many labels: more than {max_labels} (at most {max_labels} allowed)",
                              field="labels")


def form_text(value: str | UploadFile | None, field: str) -> str | None:
    """A text form field's value; a file sent under a text field's name is refused, not
    turned into the text "UploadFile(filename=...)"."""
    if isinstance(value, UploadFile):
        raise InvalidInputError(f"{field} must be a text field, not a file", field=field)
    return value


def json_field(value: Any, field: str, kind: type) -> Any:
    if value is None:
        return None
    try:
        parsed = parse_json(str(value), field)
    except MalformedRequestError as exc:  # the body is fine; this field's value is not
        raise InvalidInputError(exc.message, field=field) from exc
    if not isinstance(parsed, kind):
        raise InvalidInputError(f"{field} must be a JSON {kind.__name__}", field=field)
    return parsed


def method_request(submission: Submission, labels: list[str], settings: Settings) -> MethodRequest:
    """The request in the one form a job carries (``contract.request``), every field checked
    (workers' capabilities are checked separately)."""
    fields = submission.fields
    model = fields.model
    if model is not None and (len(model) > MAX_MODEL_NAME_CHARS or unsafe_character(model)):
        raise InvalidInputError(f"model must be a model name of at most {MAX_MODEL_NAME_CHARS} "
                                "printable characters (see GET /v1/models)", field="model")
    return normalize(fields.method, labels, options=fields.options, templates=fields.templates,
                     top_k=fields.top_k, seed=fields.seed, max_labels=settings.max_labels)


async def check_images(images: list[bytes], settings: Settings, *, max_count: int | None = None,
                       field: str = "images") -> list[bytes]:
    """Every image within the byte and pixel limits, decoded completely (once; in a thread when
    large, so it never stalls the event loop) and bounded to what is kept: the bytes to store."""
    limit = max_count or settings.max_images_per_request
    if not images:
        raise InvalidInputError("at least one image is required", field=field)
    if len(images) > limit:
        raise TooManyImagesError(f"{len(images)} images in {field}; at most {limit}", field=field)
    stored, decoded = [], 0
    for index, data in enumerate(images):
        name = f"{field}[{index}]"
        if len(data) > settings.max_image_bytes:
            raise ImageTooLargeError(f"{name} is larger than {settings.max_image_bytes} bytes",
                                     field=name)
        probed = probe(data)
        if header_pixels(probed) <= INLINE_DECODE_PIXELS:  # cheaper than the hop to a thread
            image = normalize_image(data, field=name, max_pixels=settings.max_image_pixels, probed=probed)
        else:
            image = await run_in_threadpool(normalize_image, data, field=name,
                                            max_pixels=settings.max_image_pixels, probed=probed)
        decoded += image.decoded_pixels
        if decoded > settings.max_request_pixels:
            raise ImageTooLargeError(
                f"the images up to {name} decode to {decoded} pixels; at most "
                f"{settings.max_request_pixels} per request", field=field)
        stored.append(image.data)
    return stored
