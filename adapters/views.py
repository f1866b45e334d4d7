"""Augmented views of one test image, deterministic in a per-request seed.

View 0 is the clean view (shorter side resized to ``size`` with bicubic, centre crop). The
others are random-resized crops (scale 0.08-1, aspect 3/4-4/3, as torchvision samples them) with
random horizontal flips, cut and resized all at once by ``roi_align``: one batched call instead
of 63 PIL resizes. ``roi_align`` with adaptive sampling averages every source pixel under an
output pixel, so downscaled crops are antialiased.

With ``views="augmix"`` every crop is then AugMix-ed (``adapters.augmix``), from a random stream
of its own so the crops themselves are the same as without it.

Views are returned as pixels in [0, 1] at ``size``; each model resizes/normalises for itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torchvision.ops import roi_align

from adapters.augmix import AugMixSpec, augmix
from contract.options import ViewOptions

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
SOURCE_MAX_FACTOR = 4
"""Source pixels beyond 4x the view size add cost but no detail (the smallest crop is ~0.28 of
the side), so large images are reduced first."""


def to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def clean_view(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop: [3, size, size]."""
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return to_tensor(resized.crop((left, top, left + size, top + size)))


def sample_crop(rng: np.random.Generator, height: int, width: int) -> tuple[float, float, float, float]:
    """One random-resized-crop box (x1, y1, x2, y2), torchvision's sampling rule."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return float(left), float(top), float(left + w), float(top + h)
    # Fallback: the largest centred crop within the aspect-ratio bounds.
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif in_ratio > RATIO[1]:
        h, w = height, round(height * RATIO[1])
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return float(left), float(top), float(left + w), float(top + h)


def make_views(image: Image.Image, n_views: int, size: int, seed: int,
               mix: AugMixSpec | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """[n_views, 3, size, size] in [0, 1] on ``device``; the same seed gives the same crops
    (the same pixels on one device, to float rounding across devices)."""
    if n_views < 1:
        raise ValueError("n_views must be >= 1")
    # The crops are cut where the model runs: on an H200, roi_align on the CPU was 29% of an
    # rlcf image (profiled), and the crops then went to the GPU anyway. AugMix stays on the CPU.
    where = torch.device(device) if mix is None else torch.device("cpu")
    image = image.convert("RGB")
    views = [clean_view(image, size).to(where)]
    if n_views > 1:
        source = image
        limit = SOURCE_MAX_FACTOR * size
        if max(source.size) > limit:
            source = source.copy()
            source.thumbnail((limit, limit), Image.Resampling.BICUBIC)
        pixels = to_tensor(source).to(where)
        rng = np.random.default_rng(seed)
        height, width = pixels.shape[1:]
        boxes = torch.tensor(
            [(0.0, *sample_crop(rng, height, width)) for _ in range(n_views - 1)],
            dtype=torch.float32, device=where,
        )
        flips = rng.random(n_views - 1) < 0.5
        crops = roi_align(pixels[None], boxes, output_size=size, spatial_scale=1.0,
                          sampling_ratio=0, aligned=True)
        flip_index = torch.from_numpy(np.flatnonzero(flips)).to(where)
        crops[flip_index] = crops[flip_index].flip(-1)
        crops.clamp_(0.0, 1.0)
        if mix is not None:
            crops = augmix(crops, np.random.default_rng([seed, 1]), mix)
        views.extend(crops)
    return torch.stack(views).to(device)


def views_for(image: Image.Image, options: ViewOptions, size: int, seed: int,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """The views a method's options ask for, on ``device``."""
    mix = (AugMixSpec(options.augmix_severity, options.augmix_chains, options.augmix_depth)
           if options.views == "augmix" else None)
    return make_views(image, options.n_views, size, seed, mix, device)


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
