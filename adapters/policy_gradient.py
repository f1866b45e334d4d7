"""RLCF's policy-gradient pieces, shared by the prompt and image-encoder variants."""

from __future__ import annotations

import torch

from models.reward import Reward


def top_k_actions(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Deterministic top-K classes of each view: [V, K]."""
    return logits.topk(min(k, logits.shape[-1]), dim=-1).indices


def reinforce_loss(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """mean over (view, action) of -(r - b) * log pi(action | view).

    The baseline b is the mean reward over the K actions of the same view (no std scaling)
    when K > 1; with K = 1 the reference uses no baseline, so the loss is -r * log pi (a
    baseline there would make every advantage zero and the method a no-op).
    """
    baseline = rewards.mean(dim=-1, keepdim=True) if rewards.shape[-1] > 1 else 0.0
    advantage = rewards - baseline
    log_pi = logits.log_softmax(dim=-1).gather(1, actions)
    return -(advantage.detach() * log_pi).mean()


def expected_reward(logits: torch.Tensor, reward_matrix: torch.Tensor) -> float:
    """E over kept views of E_{c ~ pi(.|view)} reward(view, c): what the tuning raises."""
    return float((logits.softmax(dim=-1) * reward_matrix).sum(dim=-1).mean())


class RewardContext:
    """Reward-model state for one request: features of the kept views, computed once."""

    def __init__(self, reward: Reward, views: torch.Tensor, labels: tuple[str, ...],
                 template: str | None = None) -> None:
        self.matrix = reward.reward_matrix(views, labels, template)  # [V, C]

    def rewards(self, actions: torch.Tensor) -> torch.Tensor:
        return self.matrix.gather(1, actions)
