"""The OpenAPI document as clients and fuzzers read it: the bodies FastAPI cannot infer (the
routes read raw JSON or multipart), this deployment's limits as schema bounds, and the error
responses every route can give."""

from __future__ import annotations

from typing import Any

from service.api.schemas import ClassifyBody, ErrorBody
from service.settings import Settings

COMMON_ERRORS = {
    "401": "Missing or unknown API key",
    "422": "Invalid parameter",
    "503": "Redis unavailable (see Retry-After)",
}
"""Responses any authenticated route may give, besides its own."""


def complete(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    from service.api.label_sets import LABEL_SET_MULTIPART_SCHEMA, LabelSetBody

    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    components.setdefault("ClassifyBody", _bounded(ClassifyBody.model_json_schema(), settings))
    components.setdefault("LabelSetBody", LabelSetBody.model_json_schema())
    label_sets = schema["paths"]["/v1/label-sets"]["post"]
    label_sets.setdefault("requestBody", {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/LabelSetBody"}},
        "multipart/form-data": {"schema": LABEL_SET_MULTIPART_SCHEMA},
    }})
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in COMMON_ERRORS.items():
                responses.setdefault(status, {"description": description, "content": error_ref})
    return schema


def _bounded(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The classify body with this deployment's limits as schema bounds."""
    properties = body["properties"]
    for name in ("labels", "label_set"):  # null is the same as leaving it out: one of them is required
        properties[name]["anyOf"] = [s for s in properties[name]["anyOf"] if s.get("type") != "null"]
    properties["images"].update(minItems=1, maxItems=settings.max_images_per_request)
    properties["images"]["items"].update(minLength=1, contentEncoding="base64")
    for option in properties["labels"].get("anyOf", []):
        if option.get("type") == "array":
            option.update(minItems=2, maxItems=settings.max_labels)
            option["items"].update(minLength=1, maxLength=100)
    return body
