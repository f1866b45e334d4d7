"""The option classes of the built-in methods (torch-free: the API validates requests with them).

Each is a frozen dataclass; the docstring under a field is its one-line doc, shown by
``tta methods`` and ``GET /v1/methods``. Defaults are the published ones (``METHODS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adapters.options import PolicyGradientOptions, ViewOptions, check_range


@dataclass(frozen=True)
class ZeroShotOptions:
    """Zero-shot has no options: templates and top_k are request fields."""


@dataclass(frozen=True)
class TPTOptions(ViewOptions):
    steps: int = 1
    """Optimisation steps (published: 1)."""
    lr: float = 5e-3
    """AdamW learning rate of the context vectors."""
    ctx_init: str = "a photo of a"
    """Phrase whose token embeddings initialise the context vectors."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("steps", self.steps, 1, 64)
        check_range("lr", self.lr, 0.0, 1.0)


@dataclass(frozen=True)
class RLCFOptions(PolicyGradientOptions):
    lr: float = 7e-3
    """AdamW learning rate of the context vectors."""
    ctx_init: str = "a photo of a"
    """Phrase whose token embeddings initialise the context vectors."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("lr", self.lr, 0.0, 1.0)


LR_ALL_PARAMS = 1e-5
"""RLCF's published rate for tuning the whole visual encoder (ViT-B/16)."""
LR_NORM_PARAMS = 1e-3
"""TENT's rate for normalisation-layer affine parameters: 1e-5 barely moves them."""


@dataclass(frozen=True)
class MLLMOptions:
    n_candidates: int = 6
    """The CLIP's top-n classes the MLLM may choose among (published: 6)."""
    draws: int = 3
    """Exemplar draws per candidate; P(True) is averaged over them (published r = 3)."""
    threshold: float = 0.6
    """Keep the CLIP label when (P(True | top-1) + CLIP max probability) / 2 reaches this."""

    def __post_init__(self) -> None:
        check_range("n_candidates", self.n_candidates, 1, 20)
        check_range("draws", self.draws, 1, 10)
        check_range("threshold", self.threshold, 0.0, 1.0)


@dataclass(frozen=True)
class RLCFTuneOptions(PolicyGradientOptions):
    lr: float | None = None
    """AdamW learning rate; default 1e-5 with params='all' (published), 1e-3 with 'norm' (TENT)."""
    params: Literal["norm", "all"] = "norm"
    """Which visual parameters to tune: normalisation layers only, or all."""
    momentum: float = 0.0
    """EMA factor of the momentum buffer (0 = off; the paper used about 0.9998)."""
    momentum_every: int = 64
    """With the buffer on, every this many images the reset point becomes the EMA."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr is not None:
            check_range("lr", self.lr, 0.0, 1.0)
        check_range("momentum", self.momentum, 0.0, 1.0 - 1e-12)
        check_range("momentum_every", self.momentum_every, 1, 1_000_000)

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return LR_ALL_PARAMS if self.params == "all" else LR_NORM_PARAMS
