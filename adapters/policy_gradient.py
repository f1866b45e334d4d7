"""RLCF's policy-gradient pieces, shared by the prompt and image-encoder variants."""

from __future__ import annotations

import torch

from models.reward import RewardModel


def top_k_actions(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Deterministic top-K classes of each view: [V, K]."""
    return logits.topk(min(k, logits.shape[-1]), dim=-1).indices


def reinforce_loss(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """mean over (view, action) of -(r - mean_k r) * log pi(action | view).

    The baseline is the mean reward over the K actions of the same view (no std scaling);
    with K = 1 the advantage is zero, exactly as in the reference.
    """
    advantage = rewards - rewards.mean(dim=-1, keepdim=True)
    log_pi = logits.log_softmax(dim=-1).gather(1, actions)
    return -(advantage.detach() * log_pi).mean()


def expected_reward(logits: torch.Tensor, reward_matrix: torch.Tensor) -> float:
    """E over kept views of E_{c ~ pi(.|view)} reward(view, c): what the tuning raises."""
    return float((logits.softmax(dim=-1) * reward_matrix).sum(dim=-1).mean())


class RewardContext:
    """Reward-model state for one request: features of the kept views, computed once."""

    def __init__(self, reward: RewardModel, views: torch.Tensor, labels: tuple[str, ...]) -> None:
        image_features = reward.encode_views(views)
        self.matrix = reward.scores(image_features, reward.class_features(labels))  # [V, C]

    def rewards(self, actions: torch.Tensor) -> torch.Tensor:
        return self.matrix.gather(1, actions)
