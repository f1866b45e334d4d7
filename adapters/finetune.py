"""Fine-tuning the policy CLIP's visual encoder on rectified labels (Machine Vision Therapy's
second half): images + labels in, a tuned visual-encoder state out.

The text side stays frozen: class text features are computed once (the label set's templates)
and act as a fixed classifier head; the loss is cross-entropy of ``logit_scale * cos`` against
the rectified label, as in CLIP fine-tuning with a frozen text head. The shared model is never
touched: training runs on a deep copy of the visual encoder, so a worker keeps serving with the
original while (or after) a fine-tune runs. BatchNorm statistics stay frozen (eval mode): a few
hundred shifted images must not redefine the normalisation the clean domain relies on.

Pure: tensors and models in, a state dict and progress callbacks out; no Redis, HTTP or files.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adapters.views import clean_view, random_resized_crops
from adapters.weights import tunable_parameters
from contract.finetune_params import MIN_HOLDOUT_TO_JUDGE, FinetuneParams
from models.classifier import ClipClassifier


@dataclass(frozen=True)
class FinetuneProgress:
    epoch: int
    """1-based epoch; 0 for the report before training."""
    epochs: int
    step: int
    total_steps: int
    loss: float | None
    holdout_agreement: float | None
    """Share of held-out images whose prediction equals their rectified label (epoch ends only)."""


class FinetuneCancelled(Exception):
    """``should_stop`` asked to stop; nothing was produced."""


class FinetuneUnsound(Exception):
    """The tuned weights are not fit to publish (a non-finite loss or weight, or held-out
    agreement fell past ``max_holdout_drop``); the message says which."""


@dataclass
class FinetuneOutcome:
    visual_state: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)


def _pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    return torch.stack([clean_view(image, size) for image in images])


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = min(n - 1, max(1, round(n * fraction))) if fraction > 0 and n > 1 else 0
    return order[n_holdout:], order[:n_holdout]


def _cosine(step: int, total: int, peak: float, floor: float) -> float:
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))


@torch.no_grad()
def _interpolate(tuned: Any, original: Any, mix: float) -> None:
    originals = dict(original.named_parameters())
    for name, param in tuned.named_parameters():
        param.copy_(originals[name] + mix * (param - originals[name]))


def check_sound(state: dict[str, torch.Tensor], before: float | None, after: float | None,
                n_holdout: int, max_holdout_drop: float) -> None:
    """FinetuneUnsound unless the tuned weights may be published: every weight finite, and
    held-out agreement not fallen by more than ``max_holdout_drop`` (judged on at least
    ``MIN_HOLDOUT_TO_JUDGE`` held-out images)."""
    broken = [name for name, value in state.items()
              if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if broken:
        raise FinetuneUnsound(f"the tuned weights are not finite ({', '.join(broken[:3])})")
    if (n_holdout >= MIN_HOLDOUT_TO_JUDGE and before is not None and after is not None
            and after < before - max_holdout_drop):
        raise FinetuneUnsound(
            f"held-out agreement fell from {before:.3f} to {after:.3f}, more than max_holdout_drop "
            f"{max_holdout_drop} (on {n_holdout} held-out images)")


def finetune_visual(
    policy: ClipClassifier, images: Sequence[Image.Image], targets: Sequence[int],
    labels: Sequence[str], templates: Sequence[str], params: FinetuneParams | None = None, *,
    on_progress: Callable[[FinetuneProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    between_steps: Callable[[], None] | None = None,
) -> FinetuneOutcome:
    """Tune a copy of ``policy``'s visual encoder on (image, label index) pairs.
    ``between_steps`` is called before every step (a worker serves waiting requests there: it
    may run anything on ``policy``, which it leaves as it found it)."""
    params = params or FinetuneParams()
    params.validate()
    if len(images) != len(targets) or not images:
        raise ValueError("images and targets must be non-empty and of equal length")
    if any(not 0 <= t < len(labels) for t in targets):
        raise ValueError("a target is not an index into labels")
    started = time.perf_counter()
    clip = policy.clip
    report = on_progress or (lambda _: None)
    stop = should_stop or (lambda: False)
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)

    with torch.no_grad():
        text = policy.class_features(labels, templates).detach()
    # Crops are cut from a 2x source so they keep detail; evaluation uses the clean view.
    source = _pixels(images, 2 * clip.image_size)
    clean = _pixels(images, clip.image_size)
    y = torch.as_tensor(list(targets), dtype=torch.long, device=clip.device)
    train_idx, holdout_idx = _split(len(images), params.holdout_fraction, params.seed)

    visual: Any = copy.deepcopy(clip.model.visual)
    visual.eval()
    tuned = tunable_parameters(visual, params.params)
    for p in visual.parameters():
        p.requires_grad_(False)
    for p in tuned.values():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(list(tuned.values()), lr=params.lr, weight_decay=params.weight_decay)
    scale = clip.logit_scale

    def logits(pixels: torch.Tensor, encoder: Any = visual) -> torch.Tensor:
        with clip.autocast():
            feats = encoder(clip.prepare(pixels))
        return scale * F.normalize(feats.float(), dim=-1) @ text.t()

    def loss_of(pixels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        student = logits(pixels)
        loss = F.cross_entropy(student, target)
        if params.distill > 0:
            with torch.no_grad():
                teacher = logits(pixels, clip.model.visual).softmax(-1)
            loss = loss + params.distill * F.kl_div(student.log_softmax(-1), teacher, reduction="batchmean")
        return loss

    @torch.no_grad()
    def agreement(index: np.ndarray) -> float | None:
        if len(index) == 0:
            return None
        hits = 0
        for start in range(0, len(index), 256):
            chunk = torch.as_tensor(index[start : start + 256])
            hits += int((logits(clean[chunk]).argmax(-1) == y[chunk]).sum())
        return hits / len(index)

    steps_per_epoch = math.ceil(len(train_idx) / params.batch_size)
    total = steps_per_epoch * params.epochs
    before = agreement(holdout_idx)
    report(FinetuneProgress(0, params.epochs, 0, total, None, before))
    step, epoch_losses, history = 0, [], []
    for epoch in range(1, params.epochs + 1):
        order = rng.permutation(train_idx)
        losses = []
        for start in range(0, len(order), params.batch_size):
            if between_steps is not None:
                between_steps()
            if stop():
                raise FinetuneCancelled(f"cancelled at epoch {epoch}, step {step}/{total}")
            batch = torch.as_tensor(order[start : start + params.batch_size])
            pixels = source[batch]
            if params.crop_scale_min < 1:
                pixels = random_resized_crops(pixels, clip.image_size, rng, params.crop_scale_min)
            else:
                pixels = clean[batch]
            for group in optimizer.param_groups:
                group["lr"] = _cosine(step, total, params.lr, params.lr_min)
            loss = loss_of(pixels, y[batch.to(y.device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise FinetuneUnsound(f"the loss became {losses[-1]} at epoch {epoch}, step {step}/{total} "
                                      "(the learning rate is likely too high)")
            if step < total:
                report(FinetuneProgress(epoch, params.epochs, step, total, losses[-1], None))
        epoch_loss = float(np.mean(losses)) if losses else float("nan")
        epoch_losses.append(round(epoch_loss, 6))
        held = agreement(holdout_idx)
        history.append(held)
        report(FinetuneProgress(epoch, params.epochs, step, total, epoch_loss, held))

    after = history[-1] if history else before
    if params.mix < 1:
        _interpolate(visual, clip.model.visual, params.mix)
        after = agreement(holdout_idx)
    state = {k: v.detach().clone() for k, v in visual.state_dict().items()}
    check_sound(state, before, after, len(holdout_idx), params.max_holdout_drop)
    seconds = time.perf_counter() - started
    return FinetuneOutcome(visual_state=state, metrics={
        "n_images": len(images), "n_train": len(train_idx), "n_holdout": len(holdout_idx),
        "steps": total, "epoch_loss": epoch_losses, "holdout_agreement_before": before,
        "holdout_agreement_after": after,
        "holdout_agreement_per_epoch": history,
        "tuned_parameters": int(sum(p.numel() for p in tuned.values())),
        "seconds": round(seconds, 3), "seconds_per_100_images": round(100 * seconds / len(images), 3),
    })
