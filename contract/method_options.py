"""The option classes of the built-in methods (torch-free: the API validates requests with them).

Each is a frozen dataclass; the docstring under a field is its one-line doc, shown by
``tta methods`` and ``GET /v1/methods``. Every method has a ``preset``: ``reference`` reproduces
the official code (``METHODS.md``; ``reference-fine-grained`` is its variant for fine-grained
datasets), ``default`` is this project's choice, which differs only where it measured better
(README, "Presets"). Options a request sets explicitly override its preset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from contract.errors import InvalidOptionsError
from contract.options import PolicyGradientOptions, ViewOptions, check_range, check_template

Preset = Literal["default", "reference", "reference-fine-grained"]
PresetTable = Mapping[str, Mapping[str, Any]]

MAX_CTX_INIT_CHARS = 200
LEARNED_PREFIX = "learned:"
_LEARNED_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
COOP = f"{LEARNED_PREFIX}coop"
"""The CoOp context stored with the policy model (``models.learned_context``)."""


def check_ctx_init(value: str) -> None:
    """A phrase ("a photo of a") or ``learned:NAME``; checked before anything is queued."""
    if value.startswith(LEARNED_PREFIX):
        if not _LEARNED_NAME.fullmatch(value[len(LEARNED_PREFIX):]):
            raise InvalidOptionsError(
                "option 'ctx_init': a learned context is named 'learned:NAME' with NAME of at most "
                "64 letters, digits, '_', '.' or '-'", field="options.ctx_init")
        return
    if not value.strip() or len(value) > MAX_CTX_INIT_CHARS or not value.isprintable():
        raise InvalidOptionsError(
            f"option 'ctx_init' must be a printable phrase of 1 to {MAX_CTX_INIT_CHARS} "
            f"characters or 'learned:NAME' (got {len(value)} characters)", field="options.ctx_init")


@dataclass(frozen=True)
class ZeroShotOptions:
    """Zero-shot has no options: templates and top_k are request fields."""


_FINE_GRAINED_VIEWS: dict[str, Any] = {"views": "augmix"}


@dataclass(frozen=True)
class TPTOptions(ViewOptions):
    PRESETS: ClassVar[PresetTable] = {"reference-fine-grained": _FINE_GRAINED_VIEWS}
    preset: Preset = "default"
    """"reference": the official code (ImageNet settings); "default": this project's choice."""
    steps: int = 1
    """Optimisation steps (published: 1)."""
    lr: float = 5e-3
    """AdamW learning rate of the context vectors."""
    weight_decay: float = 0.01
    """AdamW weight decay (the reference leaves PyTorch's default, 0.01)."""
    ctx_init: str = "a photo of a"
    """Phrase whose token embeddings initialise the context, or 'learned:coop' (a CoOp context
    stored with the model)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("steps", self.steps, 1, 64)
        check_range("lr", self.lr, 0.0, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_ctx_init(self.ctx_init)


@dataclass(frozen=True)
class ZeroOptions(ViewOptions):
    PRESETS: ClassVar[PresetTable] = {"reference-fine-grained": _FINE_GRAINED_VIEWS}
    preset: Preset = "default"
    """"reference": the official code (ImageNet settings); "default": this project's choice."""


@dataclass(frozen=True)
class TDAOptions(ViewOptions):
    PRESETS: ClassVar[PresetTable] = {
        "default": {"views": "augmix"},
        "reference": {"views": "augmix"},
        "reference-fine-grained": {"n_views": 1, "pos_alpha": 2.0, "pos_beta": 5.0},
    }
    preset: Preset = "default"
    """"reference": the official code's ImageNet settings (AugMix views); "reference-fine-grained":
    its cross-domain setting (one plain view; alpha/beta vary per dataset there, 2/5 here)."""
    pos_shots: int = 3
    """Positive cache: features kept per pseudo-label (lowest entropy first)."""
    pos_alpha: float = 1.0
    """Weight of the positive cache's logits."""
    pos_beta: float = 8.0
    """Sharpness of the positive cache's affinity exp(-beta (1 - cos))."""
    neg_shots: int = 2
    """Negative cache: features kept per pseudo-label."""
    neg_alpha: float = 0.117
    """Weight of the negative cache's logits (subtracted)."""
    neg_beta: float = 1.0
    """Sharpness of the negative cache's affinity."""
    neg_entropy_low: float = 0.2
    """An image enters the negative cache when its normalised entropy is above this ..."""
    neg_entropy_high: float = 0.5
    """... and below this."""
    neg_mask_low: float = 0.03
    """Negative-cache values: classes whose probability lies in (low, high) are marked."""
    neg_mask_high: float = 1.0
    """Upper probability bound of the negative mask."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("pos_shots", self.pos_shots, 0, 64)
        check_range("neg_shots", self.neg_shots, 0, 64)
        for name in ("pos_alpha", "pos_beta", "neg_alpha", "neg_beta"):
            check_range(name, getattr(self, name), 0.0, 100.0)
        for name in ("neg_entropy_low", "neg_entropy_high", "neg_mask_low", "neg_mask_high"):
            check_range(name, getattr(self, name), 0.0, 1.0)


@dataclass(frozen=True)
class RLCFOptions(PolicyGradientOptions):
    PRESETS: ClassVar[PresetTable] = {
        "reference": {"ctx_init": COOP},
        "reference-fine-grained": {"ctx_init": COOP, "steps": 5, **_FINE_GRAINED_VIEWS},
    }
    preset: Preset = "default"
    """"reference": the published script (CoOp context, 3 steps); "default": this project's choice."""
    lr: float = 7e-3
    """AdamW learning rate of the context vectors."""
    ctx_init: str = "a photo of a"
    """Phrase whose token embeddings initialise the context, or 'learned:coop' (a CoOp context
    stored with the model; the published script's choice)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("lr", self.lr, 0.0, 1.0)
        check_ctx_init(self.ctx_init)


LR_ALL_PARAMS = 1e-5
"""RLCF's published rate for tuning the whole visual encoder (ViT-B/16)."""
LR_NORM_PARAMS = 1e-3
"""TENT's rate for normalisation-layer affine parameters: 1e-5 barely moves them."""
REFERENCE_TUNE_TEMPLATE = "a_photo_of_a {}."
"""rlcf-tune's class and reward text in the reference: underscores kept (a quirk)."""


@dataclass(frozen=True)
class MLLMOptions:
    n_candidates: int = 6
    """The CLIP's top-n classes the MLLM may choose among (published: 6)."""
    draws: int = 3
    """Exemplar draws per candidate; P(True) is averaged over them (published r = 3)."""
    threshold: float = 0.6
    """Keep the CLIP label when (P(True | top-1) + CLIP max probability) / 2 reaches this."""
    shots: int = 2
    """Exemplar turns before the query: 2 = negative + positive (DICL), 1 = positive only, 0 = none."""
    negative_shot: Literal["paper", "code"] = "paper"
    """Negative exemplar: 'paper' = class most confused with the candidate (from T), asked about
    the top-1; 'code' = the candidate's own exemplar asked about the top-1 (the 2nd candidate's
    when the candidate is the top-1), as the official code does."""

    def __post_init__(self) -> None:
        check_range("shots", self.shots, 0, 2)
        check_range("n_candidates", self.n_candidates, 1, 20)
        check_range("draws", self.draws, 1, 10)
        check_range("threshold", self.threshold, 0.0, 1.0)


_TUNE_REFERENCE: dict[str, Any] = {
    "params": "all", "class_template": REFERENCE_TUNE_TEMPLATE,
    "reward_template": REFERENCE_TUNE_TEMPLATE,
}


@dataclass(frozen=True)
class RLCFTuneOptions(PolicyGradientOptions):
    PRESETS: ClassVar[PresetTable] = {
        "reference": _TUNE_REFERENCE,
        "reference-fine-grained": {**_TUNE_REFERENCE, "steps": 5, **_FINE_GRAINED_VIEWS},
    }
    preset: Preset = "default"
    """"reference": the published script (whole encoder, lr 1e-5); "default": norm layers."""
    lr: float | None = None
    """AdamW learning rate; default 1e-5 with params='all' (published), 1e-3 with 'norm' (TENT)."""
    params: Literal["norm", "all"] = "norm"
    """Which visual parameters to tune: normalisation layers only, or all."""
    class_template: str | None = None
    """Policy class text during tuning; None: the request's templates."""
    momentum: float = 0.0
    """EMA factor of the momentum buffer (0 = off; the paper used about 0.9998)."""
    momentum_every: int = 64
    """With the buffer on, every this many images the reset point becomes the EMA."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr is not None:
            check_range("lr", self.lr, 0.0, 1.0)
        if self.class_template is not None:
            check_template("class_template", self.class_template)
        check_range("momentum", self.momentum, 0.0, 1.0 - 1e-12)
        check_range("momentum_every", self.momentum_every, 1, 1_000_000)

    @property
    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return LR_ALL_PARAMS if self.params == "all" else LR_NORM_PARAMS


MAX_TIERS = 4
MAX_TIERS_CHARS = 400


@dataclass(frozen=True)
class AutoOptions:
    tiers: str = "tda:n_views=32+selection=0.2,rlcf:steps=10+n_views=32+selection=0.2"
    """Methods tried after zero-shot, in order, while the answer is not settled: 'method' or
    'method:option=value+option=value', comma-separated (at most 4; not zeroshot, auto or mllm)."""
    criterion: Literal["max_prob", "margin"] = "max_prob"
    """Confidence of an answer: its top probability, or top minus second."""
    threshold: float = 0.8
    """Zero-shot's answer is settled when its confidence reaches this."""
    tier_threshold: float | None = 0.6
    """A tier's answer is settled when its confidence reaches this; None: ``threshold``. 0.6
    (chosen on the validation seeds) sends a third fewer images on to the last tier than 0.8 at
    the same accuracy."""
    max_tiers: int = MAX_TIERS
    """Cost cap: at most this many tiers after zero-shot (0: zero-shot only)."""
    max_ms: float = 0.0
    """Cost ceiling: a tier starts only if the compute so far plus that tier's recent median
    cost on this worker stays within it (0: no ceiling)."""

    def __post_init__(self) -> None:
        check_range("threshold", self.threshold, 0.0, 1.0)
        if self.tier_threshold is not None:
            check_range("tier_threshold", self.tier_threshold, 0.0, 1.0)
        check_range("max_tiers", self.max_tiers, 0, MAX_TIERS)
        check_range("max_ms", self.max_ms, 0.0, 3_600_000.0)
        if len(self.tiers) > MAX_TIERS_CHARS:
            raise InvalidOptionsError(f"option 'tiers' is longer than {MAX_TIERS_CHARS} characters",
                                      field="options.tiers")
        # (what each tier names is checked by contract.tiers, which knows the catalog)

    @property
    def settled_after_tier(self) -> float:
        return self.threshold if self.tier_threshold is None else self.tier_threshold
