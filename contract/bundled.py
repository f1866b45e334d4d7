"""The models that ship with the project, as every process may name them (the API lists them;
``models.bundled`` loads them from the package's checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BundledModelInfo:
    name: str
    arch: str
    """open_clip architecture name (one of the configs in ``models/configs``)."""
    checkpoint: str
    """File name in ``models/weights``."""
    description: str


BUNDLED_MODELS: tuple[BundledModelInfo, ...] = (
    BundledModelInfo("world-policy", "tta-world-policy", "world-policy.safetensors",
                     "policy CLIP trained on the offline world (ModifiedResNet w16, 32 px; world/train.py)"),
    BundledModelInfo("world-reward", "tta-world-reward", "world-reward.safetensors",
                     "reward CLIP trained on the offline world (ModifiedResNet w32, 64 px, broad "
                     "augmentation)"),
)
