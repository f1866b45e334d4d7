"""Prompt template sets for zero-shot class features."""

from __future__ import annotations

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

SINGLE_TEMPLATE = "a photo of a {}."

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "single": (SINGLE_TEMPLATE,),
    # open_clip stores the 80 OpenAI ImageNet templates as callables; we keep format strings.
    "imagenet80": tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES),
}
DEFAULT_TEMPLATE_SET = "single"


def resolve_templates(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A template-set name, or an explicit list of format strings each containing ``{}``."""
    if value is None:
        return TEMPLATE_SETS[DEFAULT_TEMPLATE_SET]
    if isinstance(value, str):
        if value not in TEMPLATE_SETS:
            raise ValueError(
                f"unknown template set {value!r}; allowed: {', '.join(TEMPLATE_SETS)} "
                "or a list of strings containing '{}'"
            )
        return TEMPLATE_SETS[value]
    templates = tuple(value)
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError("each template must contain '{}' exactly once")
    return templates
