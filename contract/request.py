"""The one form of a classification request from intake to the method: ``MethodRequest``.

``normalize`` builds it once, where the request arrives (the API, the CLI): the method
resolved, options typed with their preset expanded, labels and templates checked, top_k bounded.
A job carries its wire form (``wire()``: every option spelled out, so equivalent requests are
equal, whatever defaults or presets they named); the worker reads it back (``from_wire``) and
hands it to the method as it is, with no second parse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract.catalog import get_spec
from contract.errors import InvalidInputError, InvalidOptionsError
from contract.labels import MAX_LABELS, validate_labels
from contract.options import parse_options
from contract.templates import TemplateSpec, validate_templates
from contract.tiers import tiers_of

MAX_TOP_K = 100
SEED_LIMIT = 2**31
"""Seeds are 0 .. 2**31 - 1 (numpy's and torch's generators take them all)."""


@dataclass(frozen=True)
class MethodRequest:
    method: str
    options: Any
    """An instance of the method's options type (``contract.catalog.MethodSpec.options_type``)."""
    labels: tuple[str, ...]
    templates: TemplateSpec
    top_k: int
    """At most the number of labels."""
    seed: int = 0
    """Seed of the first image's augmented views (image i uses seed + i)."""

    @property
    def methods_called(self) -> tuple[str, ...]:
        """This method and the methods it calls (``auto``'s tiers): a worker must serve them all."""
        return (self.method, *dict.fromkeys(t.method for t in tiers_of(self.options)))

    def wire(self) -> dict[str, Any]:
        """The JSON form a job carries: every option spelled out."""
        return {"method": self.method, "options": dataclasses.asdict(self.options),
                "labels": list(self.labels),
                "templates": self.templates if isinstance(self.templates, str) else list(self.templates),
                "top_k": self.top_k, "seed": self.seed}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> MethodRequest:
        """The request a job carries, as ``wire`` wrote it. It was validated at intake; what
        runs again is only what guards the worker if the job was written otherwise (an older
        or buggy API, a hand-edited record): the options type's own invariants (its
        constructor) and the templates, which the worker formats with ``str.format``."""
        spec = get_spec(data["method"])
        return cls(method=spec.name, options=spec.options_type(**data["options"]),
                   labels=tuple(data["labels"]), templates=checked_templates(data["templates"]),
                   top_k=int(data["top_k"]), seed=int(data["seed"]))


def checked_templates(templates: str | Sequence[str] | None) -> TemplateSpec:
    try:
        return validate_templates(templates)
    except ValueError as exc:
        raise InvalidOptionsError(str(exc), field="templates") from exc


def normalize(
    method: str, labels: Sequence[str], *, options: Mapping[str, Any] | None = None,
    templates: str | Sequence[str] | None = None, top_k: int = 5, seed: int = 0,
    max_labels: int = MAX_LABELS,
) -> MethodRequest:
    """Validate everything about a request that needs neither the image nor a model; raises
    an ``InvalidInputError`` (or ``UnknownMethodError`` ...) naming the field."""
    spec = get_spec(method)
    clean_labels = validate_labels(labels, max_labels=max_labels)
    if options is not None and not isinstance(options, Mapping):
        raise InvalidOptionsError("options must be a JSON object", field="options")
    typed: Any = parse_options(spec.options_type, options, method)
    tiers_of(typed)  # the methods it calls, checked now (auto's tiers: their names and options)
    template_spec = checked_templates(templates)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidOptionsError(f"top_k must be an integer between 1 and {MAX_TOP_K}", field="top_k")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise InvalidInputError("seed must be between 0 and 2**31 - 1", field="seed")
    return MethodRequest(spec.name, typed, clean_labels, template_spec, min(top_k, len(clean_labels)), seed)
