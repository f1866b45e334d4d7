"""One entry point for running any method on one image: validation, options, locking.

Used by the CLI and the worker. Methods run one at a time per engine because rlcf-tune edits
the shared policy weights in place (and restores them) while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from adapters.base import Method
from adapters.options import parse_options
from adapters.registry import create_method, method_names
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from models.errors import InvalidOptionsError, MissingRewardModelError
from models.labels import validate_labels
from models.templates import resolve_templates

MAX_TOP_K = 100


@dataclass(frozen=True)
class PreparedRequest:
    method: str
    options: Any
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    top_k: int


def prepare_request(
    method: str, labels: Sequence[str], *, options: Mapping[str, Any] | None = None,
    templates: str | Sequence[str] | None = None, top_k: int = 5, has_reward_model: bool = True,
) -> PreparedRequest:
    """Validate everything about a request that needs neither the image nor loaded models,
    so a bad request fails before any model is loaded or any work is queued."""
    impl = create_method(method)
    if impl.needs_reward_model and not has_reward_model:
        free = [n for n in method_names() if not create_method(n).needs_reward_model]
        raise MissingRewardModelError(
            f"method {method!r} needs a reward model and none is configured "
            "(set --reward-model / TTA_REWARD_MODEL); methods available without one: "
            + ", ".join(free),
            field="method",
        )
    clean_labels = validate_labels(labels)
    opts: Any = parse_options(impl.options_type, options, method)
    try:
        template_tuple = resolve_templates(
            templates if templates is None or isinstance(templates, str) else list(templates)
        )
    except ValueError as exc:
        raise InvalidOptionsError(str(exc), field="templates") from exc
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidOptionsError(f"top_k must be between 1 and {MAX_TOP_K}", field="top_k")
    return PreparedRequest(method, opts, clean_labels, template_tuple, min(top_k, len(clean_labels)))


class Engine:
    def __init__(self, models: Models) -> None:
        self.models = models
        self._methods: dict[str, Method] = {}
        self._lock = threading.Lock()

    def method(self, name: str) -> Method:
        if name not in self._methods:
            self._methods[name] = create_method(name)
        return self._methods[name]

    def prepare(
        self, method: str, labels: Sequence[str], *, options: Mapping[str, Any] | None = None,
        templates: str | Sequence[str] | None = None, top_k: int = 5,
    ) -> PreparedRequest:
        return prepare_request(method, labels, options=options, templates=templates,
                               top_k=top_k, has_reward_model=self.models.reward is not None)

    def run(
        self, method: str, image: Image.Image, labels: Sequence[str], *,
        options: Mapping[str, Any] | None = None, templates: str | Sequence[str] | None = None,
        top_k: int = 5, seed: int = 0, state_key: str = "default", hooks: Hooks | None = None,
    ) -> AdaptationResult:
        req = self.prepare(method, labels, options=options, templates=templates, top_k=top_k)
        inp = MethodInput(image=image, labels=req.labels, templates=req.templates,
                          top_k=req.top_k, seed=seed, state_key=state_key)
        impl = self.method(req.method)
        with self._lock:
            return impl.run(inp, self.models, req.options, hooks or Hooks())


def load_models(
    policy: str, reward: str | None = None, *, device: str | None = None, precision: str = "auto",
) -> Models:
    """Load the policy (and optional reward) CLIP once; they share one text-feature cache."""
    from models.classifier import ClipClassifier
    from models.loading import load_clip
    from models.reward import RewardModel
    from models.text_cache import LRUCache

    cache = LRUCache()
    policy_clip = ClipClassifier(load_clip(policy, device, precision), cache)
    reward_model = None
    if reward:
        reward_clip = load_clip(reward, policy_clip.clip.device, precision)
        reward_model = RewardModel(ClipClassifier(reward_clip, cache))
    return Models(policy=policy_clip, reward=reward_model)
