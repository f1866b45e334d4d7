"""Request and response bodies, as OpenAPI shows them."""

from __future__ import annotations

from typing import Annotated, Any

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


class ClassifyBody(BaseModel):
    """JSON form of a classification request (multipart takes the same fields)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "images": [EXAMPLE_PNG], "labels": ["kettle", "cup", "house"], "method": "rlcf",
        "top_k": 3, "options": {"steps": 3},
    }], **LABELS_XOR_LABEL_SET})

    images: list[str] = Field(description="base64 image bytes (JPEG, PNG, WebP); data: URLs accepted")
    labels: list[str] | str | None = Field(
        default=None, description="candidate labels, a list or one comma-separated string")
    label_set: str | None = Field(default=None, pattern=LABEL_SET_NAME,
                                  description="name of a stored label set (instead of labels)")
    method: str = Field(default="zeroshot", description="see GET /v1/methods")
    model: str | None = Field(default=None, max_length=200, description=(
        "policy model to run on (a name from GET /v1/models); default: any worker's"))
    top_k: JsonInt = 5
    options: dict[str, Any] = Field(default_factory=dict, description="method options (GET /v1/methods)")
    templates: str | list[str] | None = Field(
        default=None, description="template set name (single, imagenet80) or format strings with {}")
    seed: Seed = Field(default=0, description="seed of the augmented views")


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
