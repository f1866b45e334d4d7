"""Expanding a request's templates to format strings (the ``imagenet80`` set lives in
open_clip, so only the worker side does this; validation is ``contract.templates``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from contract.templates import SINGLE_TEMPLATE, validate_templates


@cache
def _template_set(name: str) -> tuple[str, ...]:
    if name == "single":
        return (SINGLE_TEMPLATE,)
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    # open_clip stores the 80 OpenAI ImageNet templates as callables; we keep format strings.
    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


def resolve_templates(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated and expanded to format strings."""
    spec = validate_templates(value)
    return _template_set(spec) if isinstance(spec, str) else spec
