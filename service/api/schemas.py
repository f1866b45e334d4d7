"""Request and response bodies, as OpenAPI shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


def json_integer(value: Any) -> Any:
    """An integer as JSON Schema means it: 3 or 3.0, never true or "3" (pydantic's lax mode
    takes those, its strict mode refuses 3.0, which schema-valid clients send)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(json_integer)]
"""With bounds, they go before the validator (``Seed``), or the schema loses their names."""
Seed = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(json_integer)]
LABEL_SET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LABELS_XOR_LABEL_SET: dict[str, Any] = {"oneOf": [{"required": ["labels"]}, {"required": ["label_set"]}]}
"""A classify request names its labels one way: a list, or a stored label set."""
MULTIPART_TEXT: dict[str, str] = {"description": "text (multipart fields carry no type)"}
"""Schema of a repeated multipart text field's items: any text, a number's digits included."""


FormDecoding = Literal["text", "integer", "comma-separated", "json-object", "json-list-or-name"]


@dataclass(frozen=True)
class FormAs:
    """How a multipart form carries a field (``service.api.intake`` reads it so, the OpenAPI
    says so): its text as is, as an integer, a list repeated or comma-separated, a JSON object,
    or a name or a JSON list. (Kept in the field's metadata; it changes nothing in JSON.)"""

    decoding: FormDecoding


class ClassifyFields(BaseModel):
    """A classification request's fields, declared once: the JSON body (``ClassifyBody``), the
    multipart form and both OpenAPI schemas derive from these."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=LABELS_XOR_LABEL_SET)

    labels: Annotated[list[str] | str | None, FormAs("comma-separated")] = Field(
        default=None, description="candidate labels, a list or one comma-separated string")
    label_set: Annotated[str | None, FormAs("text")] = Field(
        default=None, pattern=LABEL_SET_NAME, description="name of a stored label set (instead of labels)")
    method: Annotated[str, FormAs("text")] = Field(default="zeroshot", description="see GET /v1/methods")
    model: Annotated[str | None, FormAs("text")] = Field(default=None, max_length=200, description=(
        "policy model to run on (a name from GET /v1/models); default: any worker's"))
    top_k: Annotated[JsonInt, FormAs("integer")] = 5
    options: Annotated[dict[str, Any], FormAs("json-object")] = Field(
        default_factory=dict, description="method options (GET /v1/methods)")
    templates: Annotated[str | list[str] | None, FormAs("json-list-or-name")] = Field(
        default=None, description="template set name (single, imagenet80) or format strings with {}")
    seed: Annotated[Seed, FormAs("integer")] = Field(default=0, description="seed of the augmented views")


class ClassifyBody(ClassifyFields):
    """JSON form of a classification request (multipart takes the same fields, images as files)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "images": [EXAMPLE_PNG], "labels": ["kettle", "cup", "house"], "method": "rlcf",
        "top_k": 3, "options": {"steps": 3},
    }], **LABELS_XOR_LABEL_SET})

    images: list[str] = Field(description="base64 image bytes (JPEG, PNG, WebP); data: URLs accepted")


def form_decoding(model: type[BaseModel]) -> dict[str, FormDecoding]:
    """Each field's multipart decoding (``FormAs``)."""
    return {name: marker.decoding for name, field in model.model_fields.items()
            for marker in field.metadata if isinstance(marker, FormAs)}


def multipart_schema(model: type[BaseModel], files: dict[str, str]) -> dict[str, Any]:
    """The OpenAPI schema of ``model``'s fields as a multipart form, with these file fields
    (name: description)."""
    json_schema = model.model_json_schema()
    properties: dict[str, Any] = {name: {"type": "array", "items": {"type": "string", "format": "binary"},
                                         "description": description}
                                  for name, description in files.items()}
    for name, decoding in form_decoding(model).items():
        source = json_schema["properties"][name]
        described = {"description": source["description"]} if "description" in source else {}
        if decoding == "comma-separated":
            properties[name] = {"type": "array", "items": MULTIPART_TEXT, **described}
        elif decoding in ("json-object", "json-list-or-name"):
            properties[name] = {"type": "string", **described}
        else:
            options = [source, *source.get("anyOf", [])]
            chosen = next(o for o in options if o.get("type") in ("string", "integer"))
            properties[name] = {**{k: v for k, v in chosen.items() if k != "title"}, **described,
                                **({"default": source["default"]} if source.get("default") is not None
                                   else {})}
    return {"type": "object", "required": list(files), "properties": properties,
            **{k: v for k, v in json_schema.items() if k in ("oneOf", "anyOf")}}


class ScoredLabelOut(BaseModel):
    label: str
    score: float


class ImageResult(BaseModel):
    image: int
    label: str
    score: float
    top_k: list[ScoredLabelOut]
    zeroshot_top_k: list[ScoredLabelOut]
    changed: bool
    metrics: dict[str, Any] = Field(description="at least queue_ms, compute_ms, steps")


class LabelSetPreparation(BaseModel):
    """The result of a label set's preparation job (its transition matrix's top pairs)."""

    image: int
    label_set: str
    model: str
    confused_pairs: list[dict[str, Any]]
    metrics: dict[str, Any]


class FinetuneResult(BaseModel):
    """The result of a fine-tuning job (POST /v1/finetunes): the new model version."""

    image: int
    model: str = Field(description="the new version's name, NAME@VERSION")
    version: str
    base_model: str
    label_set: str | None
    manifest: dict[str, Any]
    metrics: dict[str, Any]


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable")
    message: str
    field: str | None = None


class JobOut(BaseModel):
    job_id: str
    kind: str = Field(description="classify, prepare_label_set (made by POST /v1/label-sets) or "
                                  "finetune (POST /v1/finetunes)")
    status: str = Field(description="queued, running, done, failed or dead")
    method: str
    n_images: int
    attempts: int
    labels: list[str]
    label_set: str | None = None
    results: list[ImageResult | LabelSetPreparation | FinetuneResult | None] = Field(
        description="one per image, in order; null until done")
    error: dict[str, Any] | None = None


class JobAccepted(BaseModel):
    job_id: str
    status: str
    events_url: str
    job_url: str
