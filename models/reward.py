"""CLIPScore reward from a (larger) frozen CLIP, or a weighted ensemble of them, as in RLCF.

reward(view, class) = weight * max(cos(image feature of the view, text feature of the class), 0)

An ensemble's reward is the weighted sum of its members' rewards, each clamped on its own
(the reference's ``CLIPRewardsMultiple`` with ``weighted_scores``). Text features are cached per
label set; image features are computed once per request for the selected views.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contract.templates import SINGLE_TEMPLATE
from models.classifier import ClipClassifier


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

    def class_features(self, labels: Sequence[str], template: str | None = None) -> torch.Tensor:
        return self.classifier.class_features(labels, (template or self.template,))

    @torch.no_grad()
    def encode_views(self, views: torch.Tensor) -> torch.Tensor:
        """Pixel views in [0,1] at any size; resized to the reward model's own resolution."""
        return self.classifier.clip.encode_images(views)

    def scores(self, image_features: torch.Tensor, class_features: torch.Tensor) -> torch.Tensor:
        """Reward of every (view, class) pair: [V, C]."""
        return self.weight * (image_features @ class_features.t()).clamp(min=0.0)

    @torch.no_grad()
    def reward_matrix(self, views: torch.Tensor, labels: Sequence[str],
                      template: str | None = None) -> torch.Tensor:
        """Reward of every (view, class) pair for pixel views: [V, C]."""
        return self.scores(self.encode_views(views), self.class_features(labels, template))


class RewardEnsemble:
    """Several reward CLIPs; the reward is sum_i weight_i * reward_i (weights as given)."""

    def __init__(self, members: Sequence[tuple[RewardModel, float]], name: str) -> None:
        if not members:
            raise ValueError("a reward ensemble needs at least one model")
        self.members = list(members)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @torch.no_grad()
    def reward_matrix(self, views: torch.Tensor, labels: Sequence[str],
                      template: str | None = None) -> torch.Tensor:
        total: torch.Tensor | None = None
        for model, weight in self.members:
            part = weight * model.reward_matrix(views, labels, template).float().cpu()
            total = part if total is None else total + part
        assert total is not None
        return total.to(self.members[0][0].classifier.clip.device)


Reward = RewardModel | RewardEnsemble
