"""One entry point for running any method on one image: validation, options, locking.

Used by the CLI and the worker. Methods run one at a time per engine because rlcf-tune edits
the shared policy weights in place (and restores them) while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from adapters.base import Method
from adapters.dicl import Exemplars
from adapters.mllm import MLLMRectify
from adapters.registry import create_method
from adapters.state_store import InMemoryStateStore, StateStore
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from adapters.zeroshot import ZeroShot
from contract.request import PreparedRequest, prepare_request
from models.mllm.prompts import MLLMScorer
from models.templates import resolve_templates


@dataclass(frozen=True)
class BatchItem:
    image: Image.Image
    labels: Sequence[str]
    templates: str | Sequence[str] | None = None
    top_k: int = 5
    hooks: Hooks | None = None
    prepared: PreparedRequest | None = None
    """The item's request as ``Engine.prepare`` validated it already (a worker checks each job
    before its batch); None: validated here."""


@dataclass(frozen=True)
class EpisodeItem:
    """One image of an episode set; the set shares labels, templates, options and top_k."""

    image: Image.Image
    seed: int = 0
    hooks: Hooks | None = None


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

    def prepare(
        self, method: str, labels: Sequence[str], *, options: Mapping[str, Any] | None = None,
        templates: str | Sequence[str] | None = None, top_k: int = 5,
    ) -> PreparedRequest:
        return prepare_request(method, labels, options=options, templates=templates,
                               top_k=top_k, has_reward_model=self.models.reward is not None,
                               has_mllm=self.models.mllm is not None)

    def run(
        self, method: str, image: Image.Image, labels: Sequence[str], *,
        options: Mapping[str, Any] | None = None, templates: str | Sequence[str] | None = None,
        top_k: int = 5, seed: int = 0, state_key: str = "default", hooks: Hooks | None = None,
        exemplars: Exemplars | None = None, label_set_version: str | None = None,
        update_id: str | None = None,
    ) -> AdaptationResult:
        req = self.prepare(method, labels, options=options, templates=templates, top_k=top_k)
        inp = MethodInput(image=image, labels=req.labels, templates=resolve_templates(req.templates),
                          top_k=req.top_k, seed=seed, state_key=state_key, exemplars=exemplars,
                          label_set_version=label_set_version, update_id=update_id,
                          state_store=self.state_store)
        impl = self.method(req.method)
        with self._lock:
            result = impl.run(inp, self.models, req.options, hooks or Hooks())
        # A diverged adaptation (e.g. a huge learning rate) must not answer NaN; zero-shot
        # scores come from the untouched model, so they are the safe answer.
        return result if result.is_finite() else result.zeroshot_fallback()

    def run_episodes(
        self, method: str, items: Sequence[EpisodeItem], labels: Sequence[str], *,
        options: Mapping[str, Any] | None = None, templates: str | Sequence[str] | None = None,
        top_k: int = 5, prepared: PreparedRequest | None = None,
    ) -> list[AdaptationResult]:
        """Several images with one method, labels and options as one episode set (one pass of
        their views through the image tower, one text pass per step; ``adapters.prompt_tuning``)
        for methods that support it; others run the images one after another. ``prepared``:
        these arguments as a caller already validated them (validating options costs ~0.15 ms)."""
        req = prepared or self.prepare(method, labels, options=options, templates=templates, top_k=top_k)
        templates_used = resolve_templates(req.templates)
        inputs = [MethodInput(image=item.image, labels=req.labels, templates=templates_used,
                              top_k=req.top_k, seed=item.seed, state_store=self.state_store)
                  for item in items]
        with self._lock:
            results = self.method(req.method).run_batch(
                inputs, self.models, req.options, [item.hooks or Hooks() for item in items])
        return [r if r.is_finite() else r.zeroshot_fallback() for r in results]

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
        inputs, hooks = [], []
        for item in items:
            req = item.prepared or self.prepare("zeroshot", item.labels, templates=item.templates,
                                                top_k=item.top_k)
            inputs.append(MethodInput(image=item.image, labels=req.labels,
                                      templates=resolve_templates(req.templates), top_k=req.top_k))
            hooks.append(item.hooks or Hooks())
        impl = self.method("zeroshot")
        assert isinstance(impl, ZeroShot)
        with self._lock:
            return impl.run_batch(inputs, self.models, None, hooks)


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
