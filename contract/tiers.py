"""The escalation ladder of the ``auto`` method, written as a string option.

``"tda,rlcf:steps=10"``: the methods ``auto`` may call after zero-shot, in order, each with
option overrides (``option=value`` pairs joined by ``+``; a value is JSON when it parses as
JSON, else a string): the same syntax as ``tta bench accuracy --methods``. Parsed and checked
at intake like any option; a mistake names ``options.tiers``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from contract.catalog import get_spec, method_specs
from contract.errors import InvalidOptionsError, TTAError
from contract.method_options import MAX_TIERS, MAX_TIERS_CHARS, AutoOptions
from contract.options import parse_options

NOT_A_TIER = frozenset({"zeroshot", "auto"})
"""Zero-shot is always the first tier; ``auto`` cannot call itself."""
TIER_METHODS = frozenset(s.name for s in method_specs() if s.name not in NOT_A_TIER and not s.needs_exemplars)
"""The built-in methods a tier may name."""


@dataclass(frozen=True)
class Tier:
    method: str
    options: Any
    """An instance of the method's options type, preset expanded."""
    text: str
    """How the request wrote it (events and metrics name the tier by it)."""


@functools.lru_cache(maxsize=256)  # (options are rebuilt per request; the text rarely varies)
def parse_tiers(text: str) -> tuple[Tier, ...]:
    if len(text) > MAX_TIERS_CHARS:  # (AutoOptions refuses it first; this guards other callers)
        raise InvalidOptionsError(f"option 'tiers' is longer than {MAX_TIERS_CHARS} characters",
                                  field="options.tiers")
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if len(entries) > MAX_TIERS:
        raise InvalidOptionsError(f"option 'tiers' names {len(entries)} tiers; at most {MAX_TIERS}",
                                  field="options.tiers")
    tiers = []
    for entry in entries:
        method, _, overrides = entry.partition(":")
        try:
            spec = get_spec(method.strip())
            if spec.name in NOT_A_TIER or spec.needs_exemplars:
                raise InvalidOptionsError(f"method {spec.name!r} cannot be a tier", field="options.tiers")
            options: Any = parse_options(spec.options_type, _overrides(overrides), spec.name)
        except TTAError as exc:
            raise InvalidOptionsError(f"option 'tiers', tier {entry!r}: {exc.message}",
                                      field="options.tiers") from exc
        tiers.append(Tier(spec.name, options, entry))
    return tuple(tiers)


def tier_method(text: str) -> str:
    """The method of a tier as written ("rlcf:steps=10" -> "rlcf"; "zeroshot" -> "zeroshot")."""
    return text.partition(":")[0].strip()


def tiers_of(options: object) -> tuple[Tier, ...]:
    """The tiers a request's method may call (``auto``'s, up to ``max_tiers``; none for the
    other methods)."""
    if not isinstance(options, AutoOptions):
        return ()
    return parse_tiers(options.tiers)[: options.max_tiers]


def _overrides(text: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in text.split("+"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidOptionsError(f"{pair!r} is not option=value", field="options.tiers")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options
