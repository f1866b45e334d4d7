"""A loaded CLIP plus its cached per-label-set text state: what the adapters work with."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.loading import LoadedClip
from models.prompt_learner import PromptLearner, PromptParts, build_prompt_parts
from models.text import TextTower, class_text_features
from models.text_cache import LRUCache


class ClipClassifier:
    def __init__(self, clip: LoadedClip, cache: LRUCache | None = None) -> None:
        self.clip = clip
        self.tower = TextTower(clip)
        self.cache = cache if cache is not None else LRUCache()

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

    def prompt_learner(self, labels: Sequence[str], init_phrase: str) -> PromptLearner:
        return PromptLearner(self.tower, self.prompt_parts(labels, init_phrase))

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.clip.logit_scale * image_features @ text_features.t()
