"""What methods exist and what they accept, without importing torch.

The API validates requests against this catalog; the worker's registry
(``adapters.registry``) turns a name into a runnable implementation. A spec names its
implementation by import path so that the catalog never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.errors import MissingMLLMError, MissingRewardModelError, UnknownMethodError
from contract.method_options import (
    AutoOptions,
    MLLMOptions,
    RLCFOptions,
    RLCFTuneOptions,
    TDAOptions,
    TPTOptions,
    ZeroOptions,
    ZeroShotOptions,
)
from contract.options import options_schema


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    options_type: type
    implementation: str
    """"module:Class" of the ``adapters.base.Method`` subclass."""
    needs_reward_model: bool = False
    needs_exemplars: bool = False
    """True for methods that only work with a label set that has exemplar images."""
    needs_mllm: bool = False
    batchable: bool = False
    """Jobs of this method may share one forward pass (the worker batches them)."""
    stateful: bool = False
    """Answers depend on earlier requests of the same tenant and label set (online state)."""
    calls_methods: bool = False
    """Its options name other methods it runs (``auto``'s tiers): it may need and keep what
    they do (``MethodRequest.methods_called``)."""

    @property
    def may_keep_state(self) -> bool:
        """A run may write online state (its own, or a method's it calls)."""
        return self.stateful or self.calls_methods

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description,
            "needs_reward_model": self.needs_reward_model, "needs_exemplars": self.needs_exemplars,
            "needs_mllm": self.needs_mllm,
            "options": options_schema(self.options_type),
            "presets": {name: dict(values) for name, values in
                        getattr(self.options_type, "PRESETS", {}).items()},
        }


_SPECS: dict[str, MethodSpec] = {}


def register_spec(spec: MethodSpec) -> None:
    if spec.name in _SPECS:
        raise ValueError(f"method {spec.name!r} is already registered")
    _SPECS[spec.name] = spec


def get_spec(name: str) -> MethodSpec:
    if name not in _SPECS:
        raise UnknownMethodError(
            f"unknown method {name!r}; allowed: {', '.join(_SPECS)}", field="method"
        )
    return _SPECS[name]


def require_capable(method: str, *, has_reward_model: bool, has_mllm: bool) -> None:
    """Whether models with (or without) a reward model and an MLLM can run ``method``."""
    spec = get_spec(method)
    if spec.needs_reward_model and not has_reward_model:
        free = [s.name for s in method_specs() if not s.needs_reward_model]
        raise MissingRewardModelError(
            f"method {spec.name!r} needs a reward model and none is configured (set --reward-model / "
            "TTA_REWARD_MODEL); methods available without one: " + ", ".join(free), field="method")
    if spec.needs_mllm and not has_mllm:
        raise MissingMLLMError(f"method {spec.name!r} needs an MLLM and none is configured (set TTA_MLLM)",
                               field="method")


def method_names() -> list[str]:
    return list(_SPECS)


def method_specs() -> list[MethodSpec]:
    return list(_SPECS.values())


for _spec in (
    MethodSpec("zeroshot", "Zero-shot CLIP on the clean view (prompt-template ensemble); no tuning.",
               ZeroShotOptions, "adapters.zeroshot:ZeroShot", batchable=True),
    MethodSpec("zero", "ZERO: vote of the confident augmented views' argmaxes; one batched forward, "
               "no backpropagation.", ZeroOptions, "adapters.zero:Zero"),
    MethodSpec("tda", "TDA: training-free positive/negative caches of past test features, shared "
               "per tenant and label set (reset: DELETE /v1/method-state/tda).",
               TDAOptions, "adapters.tda:TDA", stateful=True),
    MethodSpec("tpt", "Test-time prompt tuning: minimise marginal entropy over confident views.",
               TPTOptions, "adapters.tpt:TPT"),
    MethodSpec("rlcf", "RLCF (prompt): tune the prompt context by policy gradient on a CLIP reward.",
               RLCFOptions, "adapters.rlcf:RLCFPrompt", needs_reward_model=True),
    MethodSpec("rlcf-tune",
               "RLCF (image encoder): tune visual norm layers (or all) by policy gradient on a "
               "CLIP reward.", RLCFTuneOptions, "adapters.rlcf_tune:RLCFTune", needs_reward_model=True),
    MethodSpec("mllm",
               "MLLM label rectification (DICL): a multimodal LLM shown a confusable and a correct "
               "exemplar checks the CLIP's candidates. Needs a label set with exemplars.",
               MLLMOptions, "adapters.mllm:MLLMRectify", needs_exemplars=True, needs_mllm=True),
    MethodSpec("auto",
               "Zero-shot first, then the next tier (by default TDA, then RLCF with 10 steps, 32 views "
               "each) only while the answer's confidence is under the threshold; the result says which "
               "tier answered.",
               AutoOptions, "adapters.auto:Auto", calls_methods=True),
):
    register_spec(_spec)
