"""Prompt templates a request may name: a set by name, or format strings (validated here; the
worker expands the ``imagenet80`` set, which lives in open_clip: ``models.templates``)."""

from __future__ import annotations

from collections.abc import Sequence

from contract.text_safety import unsafe_character

SINGLE_TEMPLATE = "a photo of a {}."
TEMPLATE_SET_NAMES: tuple[str, ...] = ("single", "imagenet80")
DEFAULT_TEMPLATE_SET = "single"
MAX_TEMPLATES = 100
MAX_TEMPLATE_CHARS = 200

TemplateSpec = str | tuple[str, ...]
"""A template-set name, or explicit format strings each containing ``{}`` once."""


def validate_templates(value: str | Sequence[str] | None) -> TemplateSpec:
    """The request's templates as a set name or a tuple of format strings; ValueError if bad."""
    if value is None:
        return DEFAULT_TEMPLATE_SET
    if isinstance(value, str):
        if value not in TEMPLATE_SET_NAMES:
            raise ValueError(
                f"unknown template set {value!r}; allowed: {', '.join(TEMPLATE_SET_NAMES)} "
                "or a list of strings containing '{}'"
            )
        return value
    templates = tuple(value)
    if not templates or len(templates) > MAX_TEMPLATES:
        raise ValueError(f"give between 1 and {MAX_TEMPLATES} templates")
    for index, template in enumerate(templates):
        problem = template_problem(template)
        if problem:
            raise ValueError(f"template #{index + 1} {problem}")
    return templates


def template_problem(template: object) -> str | None:
    """Why a template is refused, or None. Only the plain ``{}`` placeholder is allowed: any
    other brace would make ``str.format`` look up fields ("{x}", "{0}", "{.__class__}") or
    apply format specs ("{:>999999}"), i.e. fail or allocate in the worker."""
    if not isinstance(template, str):
        return "is not a string"
    if len(template) > MAX_TEMPLATE_CHARS:
        return f"is longer than {MAX_TEMPLATE_CHARS} characters"
    if template.count("{}") != 1:
        return "must contain '{}' exactly once"
    if "{" in template.replace("{}", "") or "}" in template.replace("{}", ""):
        return "may contain no braces other than the one '{}'"
    problem = unsafe_character(template)
    return f"contains {problem}" if problem else None
