"""Validating a classification request before any image is decoded or model loaded.

Torch-free, so the API rejects a bad request with the same rules and messages as the worker
and the CLI, before anything is queued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract.catalog import get_spec, method_specs
from contract.errors import InvalidOptionsError, MissingMLLMError, MissingRewardModelError
from contract.labels import MAX_LABELS, validate_labels
from contract.options import parse_options
from contract.templates import TemplateSpec, validate_templates

MAX_TOP_K = 100


@dataclass(frozen=True)
class PreparedRequest:
    method: str
    options: Any
    labels: tuple[str, ...]
    templates: TemplateSpec
    top_k: int


def prepare_request(
    method: str, labels: Sequence[str], *, options: Mapping[str, Any] | None = None,
    templates: str | Sequence[str] | None = None, top_k: int = 5, has_reward_model: bool = True,
    has_mllm: bool = True, max_labels: int = MAX_LABELS,
) -> PreparedRequest:
    """Validate everything about a request that needs neither the image nor loaded models;
    raises an ``InvalidInputError`` (or ``UnknownMethodError`` ...) naming the field."""
    spec = get_spec(method)
    if spec.needs_reward_model and not has_reward_model:
        free = [s.name for s in method_specs() if not s.needs_reward_model]
        raise MissingRewardModelError(
            f"method {method!r} needs a reward model and none is configured "
            "(set --reward-model / TTA_REWARD_MODEL); methods available without one: "
            + ", ".join(free),
            field="method",
        )
    if spec.needs_mllm and not has_mllm:
        raise MissingMLLMError(
            f"method {method!r} needs an MLLM and none is configured (set TTA_MLLM)", field="method")
    clean_labels = validate_labels(labels, max_labels=max_labels)
    if options is not None and not isinstance(options, Mapping):
        raise InvalidOptionsError("options must be a JSON object", field="options")
    opts: Any = parse_options(spec.options_type, options, method)
    try:
        template_spec = validate_templates(templates)
    except ValueError as exc:
        raise InvalidOptionsError(str(exc), field="templates") from exc
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidOptionsError(f"top_k must be an integer between 1 and {MAX_TOP_K}",
                                  field="top_k")
    return PreparedRequest(method, opts, clean_labels, template_spec, min(top_k, len(clean_labels)))
