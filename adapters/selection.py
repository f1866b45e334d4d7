"""Entropy-based pieces shared by TPT and RLCF."""

from __future__ import annotations

import math

import torch


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Softmax entropy of each row: [N]."""
    log_p = logits.log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def select_confident(logits: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ``fraction`` of views with the lowest entropy (at least one),
    most confident first. 10% of 64 views keeps 6, as the reference does."""
    keep = max(1, int(logits.shape[0] * fraction))
    return torch.argsort(entropy(logits))[:keep]


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the probability averaged over views (TPT's loss), computed in log space."""
    log_p = logits.log_softmax(dim=-1)
    avg_log_p = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
    avg_log_p = avg_log_p.clamp(min=torch.finfo(avg_log_p.dtype).min)
    return -(avg_log_p.exp() * avg_log_p).sum()
