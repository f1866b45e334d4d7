"""Hyperparameters of fine-tuning on rectified labels (torch-free: the API validates them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class FinetuneParams:
    """Hyperparameters. The defaults are scaled to the bundled world policy (a 1.4M-parameter
    ModifiedResNet visual encoder trained from scratch at lr 1e-3) and chosen with
    ``tta bench finetune`` (docs/benchmarks/finetune.json): ``PAPER``'s lr 5e-7 (set for a
    pretrained ViT) moves it by nothing measurable, 3 epochs are too few at lr 1e-4, and
    without distillation the gain on shifted domains costs several points on clean."""

    lr: float = 1e-4
    """Peak Adam learning rate (cosine-annealed to ``lr_min`` over all steps)."""
    lr_min: float = 1e-5
    """Final learning rate (the paper's ratio: 5e-7 -> 5e-8)."""
    weight_decay: float = 5e-7
    epochs: int = 10
    batch_size: int = 32
    params: str = "all"
    """"all": the whole visual encoder (the paper); "norm": normalisation layers only."""
    holdout_fraction: float = 0.1
    """Share of the rectified set kept out of training to measure agreement on."""
    crop_scale_min: float = 0.5
    """Random-resized crops (area >= this share) and flips per step; 1.0 disables cropping."""
    distill: float = 1.0
    """Weight of a distillation term (KL from the original model's predictions on the same
    crops, as in Learning without Forgetting): keeps what the model knew while it learns."""
    mix: float = 1.0
    """Weight-space ensemble (WiSE-FT): the result is original + mix x (tuned - original);
    1.0 keeps the tuned weights, smaller values trade shifted-domain gain for clean accuracy."""
    max_holdout_drop: float = 0.1
    """The fine-tune fails, publishing nothing, when held-out agreement with the rectified labels
    ends this much below where it started (judged with at least ``MIN_HOLDOUT_TO_JUDGE``
    held-out images; with fewer only a non-finite loss or weight fails it)."""
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (0 < self.lr <= 1, "lr must be in (0, 1]"),
            (0 <= self.lr_min <= self.lr, "lr_min must be in [0, lr]"),
            (0 <= self.weight_decay <= 1, "weight_decay must be in [0, 1]"),
            (1 <= self.epochs <= 1000, "epochs must be 1-1000"),
            (1 <= self.batch_size <= 4096, "batch_size must be 1-4096"),
            (self.params in ("all", "norm"), "params must be 'all' or 'norm'"),
            (0 <= self.holdout_fraction < 1, "holdout_fraction must be in [0, 1)"),
            (0 < self.crop_scale_min <= 1, "crop_scale_min must be in (0, 1]"),
            (0 < self.mix <= 1, "mix must be in (0, 1]"),
            (0 <= self.distill <= 100, "distill must be in [0, 100]"),
            (0 <= self.max_holdout_drop <= 1, "max_holdout_drop must be in [0, 1]"),
            (0 <= self.seed < 2**31, "seed must be in [0, 2**31 - 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MIN_HOLDOUT_TO_JUDGE = 20
"""Held-out images below which a change of agreement says too little to reject a fine-tune."""

PAPER = FinetuneParams(lr=5e-7, lr_min=5e-8, weight_decay=5e-7, epochs=3, distill=0.0)
"""Machine Vision Therapy's published recipe (Adam, cosine to 5e-8, 3 epochs)."""


def params_from(values: dict[str, Any]) -> FinetuneParams:
    """Defaults overridden by ``values``; ValueError naming the key for unknown keys, wrong
    types or out-of-range values."""
    known = {f.name: f for f in fields(FinetuneParams)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown hyperparameter {key!r}; allowed: {', '.join(known)}")
        kind = type(getattr(FinetuneParams(), key))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ValueError(f"hyperparameter {key!r} must be a {kind.__name__}")
        clean[key] = value
    params = FinetuneParams(**clean)
    params.validate()
    return params
