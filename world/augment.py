"""Batched training augmentations on tensors (views in [0, 1])."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from adapters.views import sample_crop


def random_resized_crops(
    pixels: torch.Tensor, size: int, rng: np.random.Generator, scale_min: float = 0.5
) -> torch.Tensor:
    """[B,3,H,W] -> [B,3,size,size]: one random crop (area >= scale_min) and flip per image."""
    batch, _, height, width = pixels.shape
    boxes = []
    for index in range(batch):
        while True:
            x0, y0, x1, y1 = sample_crop(rng, height, width)
            if (x1 - x0) * (y1 - y0) >= scale_min * height * width:
                break
        boxes.append((float(index), x0, y0, x1, y1))
    crops = roi_align(pixels, torch.tensor(boxes), output_size=size, sampling_ratio=0, aligned=True)
    flips = torch.from_numpy(np.flatnonzero(rng.random(batch) < 0.5))
    crops[flips] = crops[flips].flip(-1)
    return crops


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
