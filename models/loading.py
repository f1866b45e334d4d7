"""Load a CLIP by name (see ``contract.names``) onto a device, frozen and in eval mode."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from contract.errors import ModelLoadError, UnknownModelError
from contract.names import ModelSpec, parse_model_name
from models.bundled import CONFIG_DIR, bundled_names, get_bundled, list_bundled
from models.device import autocast, resolve_device, resolve_precision

log = logging.getLogger(__name__)

open_clip.add_model_config(CONFIG_DIR)

RANDOM_INIT_SEED = 0
IMAGE_BATCH = 64
"""Views per forward pass: bounds activation memory for large view counts."""


@dataclass
class LoadedClip:
    """A frozen CLIP with what is needed to feed it."""

    name: str
    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device
    precision: str
    _mean_t: torch.Tensor = field(init=False, repr=False)
    _std_t: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._mean_t = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std_t = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)

    @property
    def logit_scale(self) -> float:
        # Trained CLIPs sit at the clamp (100); random ones at 1/0.07.
        return float(self.model.logit_scale.exp().clamp(max=100.0).item())  # type: ignore[operator]

    def autocast(self) -> Any:
        return autocast(self.device, self.precision)

    def prepare(self, views: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] pixels in [0,1] (any size) -> this model's resolution and normalisation."""
        views = views.to(self.device, dtype=torch.float32)
        if views.shape[-1] != self.image_size or views.shape[-2] != self.image_size:
            views = F.interpolate(
                views, size=(self.image_size, self.image_size), mode="bicubic",
                align_corners=False, antialias=True,
            ).clamp_(0.0, 1.0)
        return (views - self._mean_t) / self._std_t

    def encode_images(self, views: torch.Tensor) -> torch.Tensor:
        """Normalised image features of pixel views; gradients flow if the caller enables them."""
        chunks = []
        for start in range(0, views.shape[0], IMAGE_BATCH):
            batch = self.prepare(views[start : start + IMAGE_BATCH])
            with self.autocast():
                feats = self.model.encode_image(batch)  # type: ignore[operator]
            chunks.append(F.normalize(feats.float(), dim=-1))
        return torch.cat(chunks)


def known_model_names() -> list[str]:
    return [m.name for m in list_bundled()]


def _unknown(spec_name: str, reason: str) -> UnknownModelError:
    bundled = ", ".join(known_model_names()) or "none installed"
    return UnknownModelError(
        f"unknown model {spec_name!r}: {reason}. Allowed: a bundled model ({bundled}), "
        "ARCH:TAG, ARCH:PATH, ARCH:random, hf-hub:ORG/REPO or local-dir:PATH, where ARCH is "
        "an open_clip architecture (`tta models --all` lists them)",
        field="model",
    )


def _create(spec: ModelSpec, device: torch.device) -> nn.Module:
    if spec.kind == "bundled":
        bundled = get_bundled(spec.arch)
        if not bundled.checkpoint.is_file():
            raise ModelLoadError(f"bundled model {spec.arch!r} is missing {bundled.checkpoint}")
        return open_clip.create_model(bundled.arch, pretrained=str(bundled.checkpoint), device=device)
    if spec.kind == "schema":
        return open_clip.create_model(spec.arch, device=device)
    if spec.arch not in open_clip.list_models():
        raise _unknown(spec.name, f"no open_clip architecture named {spec.arch!r}")
    if spec.kind == "random":
        # open_clip warns on the root logger that no weights were loaded: that is the point here.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                return open_clip.create_model(spec.arch, pretrained=None, device=device)
        finally:
            root.setLevel(level)
    if spec.kind == "checkpoint":
        if not Path(str(spec.source)).is_file():
            raise ModelLoadError(f"checkpoint file not found: {spec.source}", field="model")
        return open_clip.create_model(spec.arch, pretrained=spec.source, device=device)
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    if spec.source not in tags:
        raise _unknown(
            spec.name,
            f"{spec.arch} has no pretrained tag {spec.source!r} (tags: {', '.join(tags) or 'none'}; "
            "or use ARCH:random / ARCH:PATH)",
        )
    return open_clip.create_model(spec.arch, pretrained=spec.source, device=device)


def _apply_version(model: nn.Module, spec: ModelSpec, store_dir: str | Path | None) -> None:
    """Replace the visual encoder's weights with a stored fine-tuned version of ``spec.base``."""
    from models.store import ModelStore

    assert spec.version is not None
    state = ModelStore(store_dir).load_visual(spec.base, spec.version)
    try:
        model.visual.load_state_dict(state, strict=True)  # type: ignore[union-attr]
    except RuntimeError as exc:
        raise ModelLoadError(f"version {spec.name!r} does not fit {spec.base!r}: {exc}",
                             field="model") from exc


def load_clip(name: str, device: str | torch.device | None = None, precision: str = "auto",
              store_dir: str | Path | None = None) -> LoadedClip:
    """Load, freeze and return a CLIP. ``NAME@VERSION`` loads NAME and puts the version's
    visual weights from the model store (``store_dir`` or ``TTA_MODEL_STORE``) in place.
    Raises UnknownModelError / ModelLoadError."""
    try:
        spec = parse_model_name(name, bundled_names())
    except ValueError as exc:
        raise _unknown(name, str(exc)) from exc
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    try:
        model = _create(spec, dev)
        if spec.version is not None:
            _apply_version(model, spec, store_dir)
    except (UnknownModelError, ModelLoadError):
        raise
    except Exception as exc:  # open_clip raises bare RuntimeError/OSError for hub and file problems
        raise ModelLoadError(f"could not load model {name!r}: {exc}", field="model") from exc
    model.eval()
    model.requires_grad_(False)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    tokenizer = open_clip.get_tokenizer(spec.arch if spec.kind != "bundled" else get_bundled(spec.arch).arch)
    log.info("loaded %s on %s (%s, image size %d)", name, dev, precision, size)
    return LoadedClip(
        name=name, model=model, tokenizer=tokenizer, image_size=size, mean=mean, std=std,
        device=dev, precision=resolve_precision(dev, precision),
    )
