"""Batched training augmentations on tensors (views in [0, 1])."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from adapters.views import random_resized_crops

__all__ = ["broad_photometric", "random_resized_crops"]


def _where(mask: torch.Tensor, changed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), changed, original)


def broad_photometric(x: torch.Tensor, rng: np.random.Generator, p: float = 0.25) -> torch.Tensor:
    """The reward model's broader augmentation: colour jitter, channel shuffles, grayscale,
    blur and noise, each applied to a random subset of the batch."""
    batch = x.shape[0]

    def pick() -> torch.Tensor:
        return torch.from_numpy(rng.random(batch) < p)

    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**31)))
    brightness = 1 + (torch.rand(batch, 1, 1, 1, generator=gen) - 0.5) * 0.8
    contrast = 1 + (torch.rand(batch, 1, 1, 1, generator=gen) - 0.5) * 0.8
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = _where(pick(), ((x - mean) * contrast + mean) * brightness, x)
    perm = torch.from_numpy(rng.permutation(3))
    x = _where(pick(), x[:, perm], x)
    gray = x.mean(dim=1, keepdim=True).expand_as(x)
    x = _where(pick(), gray, x)
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 256.0).expand(3, 1, 5, 5)
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=3)
    x = _where(pick(), blurred, x)
    noise = torch.randn(x.shape, generator=gen) * 0.08
    x = _where(pick(), x + noise, x)
    return x.clamp(0.0, 1.0)
