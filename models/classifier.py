"""A loaded CLIP plus its cached per-label-set text state: what the adapters work with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from contract.errors import InvalidOptionsError
from models.learned_context import load_context_file
from models.loading import LoadedClip
from models.prompt_learner import PromptLearner, PromptParts, build_prompt_parts
from models.text import TextTower, class_text_features
from models.text_cache import LRUCache

LEARNED_PREFIX = "learned:"


class ClipClassifier:
    def __init__(self, clip: LoadedClip, cache: LRUCache | None = None,
                 contexts: Mapping[str, Path | torch.Tensor] | None = None) -> None:
        self.clip = clip
        self.tower = TextTower(clip)
        self.cache = cache if cache is not None else LRUCache()
        self.contexts: dict[str, Path | torch.Tensor] = dict(contexts or {})
        """Learned contexts by name (``ctx_init="learned:NAME"``): files load on first use."""

    @property
    def name(self) -> str:
        return self.clip.name

    def class_features(self, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        key = ("classes", self.name, tuple(labels), tuple(templates))
        return self.cache.get_or_compute(
            key, lambda: class_text_features(self.tower, labels, templates)
        )

    def prompt_parts(self, labels: Sequence[str], init_phrase: str) -> PromptParts:
        key = ("prompt", self.name, tuple(labels), init_phrase)
        return self.cache.get_or_compute(
            key, lambda: build_prompt_parts(self.tower, labels, init_phrase)
        )

    def learned_context(self, name: str) -> torch.Tensor:
        source = self.contexts.get(name)
        if source is None:
            raise InvalidOptionsError(
                f"model {self.name!r} has no learned context {name!r} "
                f"(available: {', '.join(sorted(self.contexts)) or 'none'})", field="options.ctx_init")
        if not isinstance(source, torch.Tensor):
            source = self.contexts[name] = load_context_file(source)
        if source.shape[1] != self.tower.width:
            raise InvalidOptionsError(
                f"learned context {name!r} has width {source.shape[1]}, model {self.name!r} "
                f"needs {self.tower.width}", field="options.ctx_init")
        return source

    def prompt_learner(self, labels: Sequence[str], ctx_init: str) -> PromptLearner:
        """Context from a phrase, or from a learned context (``learned:NAME``), whose n vectors
        take the place of n one-token placeholders (CoOp's "X X X X")."""
        if not ctx_init.startswith(LEARNED_PREFIX):
            return PromptLearner(self.tower, self.prompt_parts(labels, ctx_init))
        ctx = self.learned_context(ctx_init[len(LEARNED_PREFIX):])
        parts = self.prompt_parts(labels, " ".join(["X"] * ctx.shape[0]))
        return PromptLearner(self.tower, replace(parts, ctx_init=ctx.to(parts.ctx_init.device)))

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.clip.logit_scale * image_features @ text_features.t()
