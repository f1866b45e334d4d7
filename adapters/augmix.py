"""AugMix on a batch of crops, as TPT's reference applies it (severity 1, 3 chains of 1-3
operations from the 9 AugMix operations without colour/contrast/brightness/sharpness,
Dirichlet(1) chain weights, Beta(1, 1) blend with the un-augmented crop).

Every (crop, chain) pair is one row of a batch; at each depth the rows that still have an
operation to apply are grouped by operation and each group is transformed in one call (affine
operations through one ``grid_sample`` with per-row matrices), so a 63-view image takes at most
depth x 9 batched calls instead of ~400 PIL calls. Magnitudes follow the reference: a level drawn
from U(0.1, severity) scales each operation's maximum (rotation 30 degrees, shear 0.3,
translation a third of 224 pixels, solarize 256, posterize 4 bits) by level / 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

REFERENCE_SIZE = 224
"""The reference's translation is a fraction of 224 pixels whatever the crop size."""


@dataclass(frozen=True)
class AugMixSpec:
    severity: int = 1
    chains: int = 3
    depth: int = 3
    """Each chain applies 1 to ``depth`` operations."""


def _autocontrast(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    span = high - low
    return torch.where(span > 0, (x - low) / span.clamp(min=1e-8), x)


def _equalize(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return TF.equalize((x * 255).round().to(torch.uint8)).float() / 255


def _posterize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    bits = 4 - (level * 4 / 10).floor()  # the reference keeps 4 - int_parameter(level, 4) bits
    mask = (255 - (2 ** (8 - bits) - 1)).to(torch.int32).view(-1, 1, 1, 1)
    return ((x * 255).round().to(torch.int32) & mask).float() / 255


def _solarize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    threshold = (256 - (level * 256 / 10).floor()).view(-1, 1, 1, 1) / 255
    return torch.where(x >= threshold, 1 - x, x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _eye(n: int) -> torch.Tensor:
    return torch.eye(2, 3).repeat(n, 1, 1)


def _rotate(x: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
    radians = (signed.abs() * 30 / 10).floor() * signed.sign() * math.pi / 180
    theta = _eye(x.shape[0])
    theta[:, 0, 0], theta[:, 0, 1] = radians.cos(), -radians.sin()
    theta[:, 1, 0], theta[:, 1, 1] = radians.sin(), radians.cos()
    return _affine(x, theta)


def _shear(axis: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def shear(x: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
        amount = signed * 0.3 / 10
        theta = _eye(x.shape[0])
        # PIL's shear maps output (x, y) to input (x + s y, y) from the top-left corner.
        theta[:, axis, 1 - axis] = amount
        theta[:, axis, 2] = amount
        return _affine(x, theta)
    return shear


def _translate(axis: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def translate(x: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
        pixels = (signed.abs() * (REFERENCE_SIZE / 3) / 10).floor() * signed.sign()
        theta = _eye(x.shape[0])
        theta[:, axis, 2] = 2 * pixels / REFERENCE_SIZE
        return _affine(x, theta)
    return translate


OPERATIONS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    _autocontrast, _equalize, _posterize, _rotate, _solarize,
    _shear(0), _shear(1), _translate(0), _translate(1),
)


def augmix(crops: torch.Tensor, rng: np.random.Generator, spec: AugMixSpec) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> AugMix of each crop, same shape; deterministic in ``rng``."""
    n, chains = crops.shape[0], spec.chains
    rows = n * chains
    depths = rng.integers(1, spec.depth + 1, size=rows)
    ops = rng.integers(0, len(OPERATIONS), size=(spec.depth, rows))
    levels = rng.uniform(0.1, spec.severity, size=(spec.depth, rows))
    signs = np.where(rng.random((spec.depth, rows)) > 0.5, -1.0, 1.0)
    weights = torch.from_numpy(rng.dirichlet([1.0] * chains, size=n)).float()  # [N, chains]
    blend = torch.from_numpy(rng.beta(1.0, 1.0, size=n)).float().view(n, 1, 1, 1)

    x = crops.float().repeat_interleave(chains, dim=0)  # row = crop * chains + chain
    for d in range(spec.depth):
        for op_index, operation in enumerate(OPERATIONS):
            selected = np.flatnonzero((depths > d) & (ops[d] == op_index))
            if selected.size == 0:
                continue
            index = torch.from_numpy(selected)
            level = torch.from_numpy(levels[d, selected] * signs[d, selected]).float()
            # Point operations use |level|; the geometric ones take the sign as direction.
            x[index] = operation(x[index], level if op_index >= 3 and op_index != 4 else level.abs())
    mixed = (x.view(n, chains, *x.shape[1:]) * weights.view(n, chains, 1, 1, 1)).sum(dim=1)
    return (blend * crops + (1 - blend) * mixed).clamp_(0.0, 1.0)
