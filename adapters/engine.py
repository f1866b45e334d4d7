"""One entry point for running any method: a normalised request (``contract.request``) and an
image in, a result out; capabilities checked, the method found, runs serialised.

Used by the worker and the CLI. Methods run one at a time per engine because rlcf-tune edits
the shared policy weights in place (and restores them) while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from adapters.base import Method
from adapters.dicl import Exemplars
from adapters.mllm import MLLMRectify
from adapters.registry import create_method
from adapters.state_store import InMemoryStateStore, StateStore
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from adapters.zeroshot import ZeroShot
from contract.catalog import require_capable
from contract.request import MethodRequest, normalize
from models.mllm.prompts import MLLMScorer
from models.templates import resolve_templates


@dataclass(frozen=True)
class RunContext:
    """What a run may need besides its request and image."""

    state_key: str = "default"
    """Scope of the state a method keeps across requests (TDA: tenant and label set)."""
    update_id: str | None = None
    """Identity of this image's job (job id / image): online state is updated once per id."""
    exemplars: Exemplars | None = None
    """A label set's exemplar images per class (mllm)."""
    label_set_version: str | None = None
    """Content hash of the label set the labels and exemplars came from (a cache key)."""


@dataclass(frozen=True)
class BatchItem:
    """One image of a zero-shot batch, with its own request (labels, templates, top_k)."""

    request: MethodRequest
    image: Image.Image
    hooks: Hooks | None = None


@dataclass(frozen=True)
class EpisodeItem:
    """One image of an episode set; the set shares one request (seeds differ)."""

    image: Image.Image
    seed: int = 0
    hooks: Hooks | None = None
    context: RunContext = RunContext()
    """The image's own state scope and update id: set-mates may be other tenants' jobs
    (``auto`` with a TDA tier)."""


def finite(result: AdaptationResult) -> AdaptationResult:
    """A diverged adaptation (e.g. a huge learning rate) must not answer NaN; zero-shot scores
    come from the untouched model, so they are the safe answer."""
    return result if result.is_finite() else result.zeroshot_fallback()


def finite_settled(hooks: Hooks) -> Hooks:
    """The hooks, with ``finite`` applied to an answer given early, as to those returned."""
    settled = hooks.on_settled
    return replace(hooks, on_settled=lambda result: settled(finite(result)))


class Engine:
    def __init__(self, models: Models, state_store: StateStore | None = None) -> None:
        self.models = models
        self.state_store: StateStore = state_store or InMemoryStateStore()
        """Online method state (TDA); the worker passes one every worker shares (Redis)."""
        self._methods: dict[str, Method] = {}
        self._lock = threading.RLock()

    def method(self, name: str) -> Method:
        if name not in self._methods:
            self._methods[name] = create_method(name)
        return self._methods[name]

    def check(self, request: MethodRequest) -> None:
        """Whether these models can run the request's method and the methods it calls (a reward
        model, an MLLM)."""
        for method in request.methods_called:
            require_capable(method, has_reward_model=self.models.reward is not None,
                            has_mllm=self.models.mllm is not None)

    def run(self, request: MethodRequest, image: Image.Image, *, seed: int | None = None,
            hooks: Hooks | None = None, context: RunContext | None = None) -> AdaptationResult:
        """One image; ``seed`` defaults to the request's."""
        self.check(request)
        inp = self.method_input(request, resolve_templates(request.templates), image,
                                request.seed if seed is None else seed, context or RunContext())
        impl = self.method(request.method)
        with self._lock:
            result = impl.run(inp, self.models, request.options, hooks or Hooks())
        return finite(result)

    def method_input(self, request: MethodRequest, templates: tuple[str, ...], image: Image.Image,
                     seed: int, context: RunContext) -> MethodInput:
        """One image's input to a method: the request's labels and top_k, its own seed and context."""
        return MethodInput(image=image, labels=request.labels, templates=templates, top_k=request.top_k,
                           seed=seed, state_key=context.state_key, exemplars=context.exemplars,
                           label_set_version=context.label_set_version, update_id=context.update_id,
                           state_store=self.state_store)

    def classify(self, method: str, image: Image.Image, labels: Sequence[str], *,
                 options: Mapping[str, Any] | None = None, templates: str | Sequence[str] | None = None,
                 top_k: int = 5, seed: int = 0, hooks: Hooks | None = None,
                 context: RunContext | None = None) -> AdaptationResult:
        """``run`` for a caller in this process that has the request's parts, not the request
        (the CLI, benchmarks, tests): normalised first, as the API does."""
        request = normalize(method, labels, options=options, templates=templates, top_k=top_k, seed=seed)
        return self.run(request, image, hooks=hooks, context=context)

    def run_episodes(self, request: MethodRequest, items: Sequence[EpisodeItem]) -> list[AdaptationResult]:
        """Several images with one request as one episode set (one pass of their views through
        the image tower, one text pass per step; ``adapters.prompt_tuning``) for methods that
        support it; others run the images one after another."""
        self.check(request)
        templates = resolve_templates(request.templates)
        inputs = [self.method_input(request, templates, item.image, item.seed, item.context)
                  for item in items]
        hooks = [finite_settled(item.hooks or Hooks()) for item in items]
        with self._lock:
            results = self.method(request.method).run_batch(inputs, self.models, request.options, hooks)
        return [finite(r) for r in results]

    def confusions(self, labels: Sequence[str], templates: str | Sequence[str] | None,
                   exemplars: Exemplars, version: str,
                   between_classes: Callable[[], None] | None = None) -> list[dict[str, object]]:
        """The most confused class pairs of a label set, from the transition matrix the mllm
        method uses (estimated from the exemplars with the policy CLIP, cached per version).
        ``between_classes`` may run other requests on this engine: the lock is re-entrant, and
        nothing here changes the models (a method that does restores them before it returns)."""
        impl = self.method("mllm")
        assert isinstance(impl, MLLMRectify)
        with self._lock:
            return impl.confusions(self.models, version, tuple(labels), resolve_templates(templates),
                                   exemplars, between_classes)

    def run_zeroshot_batch(self, items: list[BatchItem]) -> list[AdaptationResult]:
        """Zero-shot for several images in one forward pass (the worker's batching)."""
        inputs = [MethodInput(image=item.image, labels=item.request.labels,
                              templates=resolve_templates(item.request.templates), top_k=item.request.top_k)
                  for item in items]
        impl = self.method("zeroshot")
        assert isinstance(impl, ZeroShot)
        with self._lock:
            return impl.run_batch(inputs, self.models, None, [item.hooks or Hooks() for item in items])


def load_models(
    policy: str, reward: str | None = None, *, device: str | None = None, precision: str = "auto",
    mllm: MLLMScorer | None = None,
) -> Models:
    """Load the policy (and optional reward) CLIP once; they share one text-feature cache.

    ``reward`` is one model name or a weighted ensemble ``A*0.56+B*0.17+C*0.28``
    (``models.reward_spec``). The policy gets its learned contexts (``models.learned_context``).
    """
    from contract.errors import UnknownModelError
    from models.classifier import ClipClassifier
    from models.learned_context import configured_contexts
    from models.loading import load_clip
    from models.reward import Reward, RewardEnsemble, RewardModel
    from models.reward_spec import parse_reward_spec
    from models.text_cache import LRUCache

    cache = LRUCache()
    policy_clip = ClipClassifier(load_clip(policy, device, precision), cache,
                                 contexts=configured_contexts(policy))
    reward_model: Reward | None = None
    if reward:
        try:
            members = parse_reward_spec(reward)
        except ValueError as exc:
            raise UnknownModelError(str(exc), field="reward_model") from exc
        loaded = [(RewardModel(ClipClassifier(load_clip(name, policy_clip.clip.device, precision),
                                              cache)), weight) for name, weight in members]
        single = len(loaded) == 1 and "*" not in reward
        reward_model = loaded[0][0] if single else RewardEnsemble(loaded, reward)
    return Models(policy=policy_clip, reward=reward_model, mllm=mllm)
