"""CLIPScore reward from a (larger) frozen CLIP, as in RLCF.

reward(view, class) = weight * max(cos(image feature of the view, text feature of the class), 0)

Text features are cached per label set; image features are computed once per request for the
selected views and reused by every tuning step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.classifier import ClipClassifier
from models.templates import SINGLE_TEMPLATE


class RewardModel:
    def __init__(
        self, classifier: ClipClassifier, template: str = SINGLE_TEMPLATE, weight: float = 2.5
    ) -> None:
        self.classifier = classifier
        self.template = template
        self.weight = weight

    @property
    def name(self) -> str:
        return self.classifier.name

    def class_features(self, labels: Sequence[str]) -> torch.Tensor:
        return self.classifier.class_features(labels, (self.template,))

    @torch.no_grad()
    def encode_views(self, views: torch.Tensor) -> torch.Tensor:
        """Pixel views in [0,1] at any size; resized to the reward model's own resolution."""
        return self.classifier.clip.encode_images(views)

    def scores(self, image_features: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        """Reward of every (view, class) pair: [V, C]."""
        return self.weight * (image_features @ class_features.t()).clamp(min=0.0)

    def action_rewards(
        self, image_features: torch.Tensor, class_features: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """Reward of the chosen classes ``actions`` [V, K] for each view: [V, K]."""
        chosen = class_features[actions]  # [V, K, D]
        cos = torch.einsum("vd,vkd->vk", image_features, chosen)
        return self.weight * cos.clamp(min=0.0)
