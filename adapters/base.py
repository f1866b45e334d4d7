"""The method interface and the helpers every method shares."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from adapters.types import AdaptationResult, Hooks, MethodInput, Models, ScoredLabel


class Method(ABC):
    """One adaptation method. Instances live as long as the worker; ``run`` must leave every
    model parameter bit-for-bit as it found it (also when it raises)."""

    name: ClassVar[str]
    """The catalog entry (``contract.catalog``) holds its description and options type."""

    episodes_batch: ClassVar[bool] = False
    """``run_batch`` really runs several images as one episode set (not one after another)."""

    @abstractmethod
    def run(
        self, inp: MethodInput, models: Models, options: Any, hooks: Hooks
    ) -> AdaptationResult: ...

    def run_batch(
        self, inputs: Sequence[MethodInput], models: Models, options: Any, hooks: Sequence[Hooks]
    ) -> list[AdaptationResult]:
        """Several images with the same labels and options; each result as ``run`` gives it."""
        return [self.run(inp, models, options, h) for inp, h in zip(inputs, hooks, strict=True)]


def ranked(probs: torch.Tensor, labels: Sequence[str], k: int) -> list[ScoredLabel]:
    """The k most probable labels of a [C] probability vector, best first."""
    values, indices = probs.float().topk(min(k, len(labels)))
    return [
        ScoredLabel(labels[i], round(float(v), 6))
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def zeroshot_guess(
    models: Models, inp: MethodInput, clean_features: torch.Tensor, hooks: Hooks
) -> tuple[torch.Tensor, list[ScoredLabel]]:
    """Zero-shot probabilities of the clean view with the request's templates; reported at
    once so a client sees a guess before any tuning starts."""
    policy = models.policy
    with torch.no_grad():
        text = policy.class_features(inp.labels, inp.templates)
        probs = policy.logits(clean_features, text).softmax(dim=-1)[0]
    top = ranked(probs, inp.labels, inp.top_k)
    hooks.on_zeroshot(top)
    return probs, top


def encode_views(
    models: Models, inputs: Sequence[MethodInput], options: Any, hooks: Sequence[Hooks]
) -> tuple[torch.Tensor, torch.Tensor, list[list[ScoredLabel]]]:
    """The augmented views of several images (each with its own seed) encoded in one pass, and
    each clean view's zero-shot guess reported: (views [B, V, 3, H, W], frozen features
    [B, V, D], zero-shot top-k per image). Inputs share labels and templates."""
    from adapters.views import views_for

    policy = models.policy
    # On the model's device: the tuning steps index and re-encode them there.
    views = torch.stack([views_for(inp.image, options, policy.clip.image_size, inp.seed, policy.clip.device)
                         for inp in inputs])
    batch, n_views = views.shape[:2]
    with torch.no_grad():
        features = policy.clip.encode_images(views.flatten(0, 1)).view(batch, n_views, -1)
    tops = [zeroshot_guess(models, inp, features[b, :1], hooks[b])[1] for b, inp in enumerate(inputs)]
    return views, features, tops


def score_views(
    models: Models, inputs: Sequence[MethodInput], options: Any, hooks: Sequence[Hooks]
) -> tuple[torch.Tensor, list[list[ScoredLabel]], torch.Tensor]:
    """The one forward pass of the training-free methods, for one image or several:
    (view features [B, V, D], zero-shot top-k per image, per-view logits [B, V, C])."""
    policy = models.policy
    _, features, tops = encode_views(models, inputs, options, hooks)
    with torch.no_grad():
        text = policy.class_features(inputs[0].labels, inputs[0].templates)
        logits = policy.clip.logit_scale * features @ text.t()
    return features, tops, logits


def build_result(
    probs: torch.Tensor, zeroshot_top: list[ScoredLabel], inp: MethodInput, metrics: dict[str, Any]
) -> AdaptationResult:
    top = ranked(probs, inp.labels, inp.top_k)
    return AdaptationResult(
        label=top[0].label, score=top[0].score, top_k=top, zeroshot_top_k=zeroshot_top,
        changed=top[0].label != zeroshot_top[0].label, metrics=metrics,
    )


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000.0, 3)
