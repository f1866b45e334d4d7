"""rlcf-tune for several images at once: each image tunes its own copy of the image encoder's
tuned weights, all copies in one batched forward (``torch.func.vmap`` over
``functional_call``), so the shared model is never edited. Each image's loss depends only on
its own copy and AdamW is elementwise, so every image gets the updates it would get alone (to
float rounding)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from adapters.base import Stopwatch, build_result, encode_views, ranked
from adapters.policy_gradient import expected_reward, reinforce_loss, top_k_actions
from adapters.selection import select_confident
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress
from adapters.weights import tunable_parameters
from contract.method_options import RLCFTuneOptions


@contextmanager
def attention_for_vmap() -> Iterator[None]:
    """Attention kernels that work under vmap with gradients. nn.MultiheadAttention's fused
    inference kernel has no derivative under vmap, and the fused scaled-dot-product kernels
    either fall back to a per-image loop (CPU flash) or fail in backward (CUDA
    memory-efficient: "LSE is not correctly aligned"); the math kernel is plain batched matmuls,
    which vmap batches. All compute the same attention. (The fastpath flag is process-wide: the
    engine runs one method at a time.)"""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def tune_copies(inputs: Sequence[MethodInput], models: Models, options: RLCFTuneOptions,
                hooks: Sequence[Hooks]) -> list[AdaptationResult]:
    assert models.reward is not None
    watch = Stopwatch()
    policy, clip = models.policy, models.policy.clip
    labels = inputs[0].labels
    templates = (options.class_template,) if options.class_template else inputs[0].templates
    text = policy.class_features(labels, templates)
    views, features, zeroshot_tops = encode_views(models, inputs, options, hooks)
    batch = len(inputs)
    with torch.no_grad():
        initial = clip.logit_scale * features @ text.t()  # [B, V, C]
    selected = torch.stack([select_confident(initial[b], options.selection) for b in range(batch)])
    kept_views = torch.stack([views[b][selected[b]] for b in range(batch)])  # [B, K, 3, H, W]
    rewards = models.reward.reward_matrix(kept_views.flatten(0, 1), labels,
                                          options.reward_template).view(batch, -1, len(labels))
    reward_before = [expected_reward(initial[b][selected[b]], rewards[b]) for b in range(batch)]

    visual: Any = clip.model.visual
    tuned = tunable_parameters(visual, options.params)
    copies = {name: p.detach().unsqueeze(0).repeat(batch, *([1] * p.dim())).requires_grad_(True)
              for name, p in tuned.items()}
    optimizer = torch.optim.AdamW(list(copies.values()), lr=options.effective_lr,
                                  weight_decay=options.weight_decay)

    def encode(weights: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        with clip.autocast():
            out = functional_call(visual, weights, (clip.prepare(pixels),))
        return F.normalize(out.float(), dim=-1)

    # The clean view rides along in each step's forward so progress reports its top-k.
    step_views = torch.cat([views[:, :1], kept_views], dim=1)  # [B, 1 + K, 3, H, W]
    with attention_for_vmap():
        for step in range(options.steps):
            both = clip.logit_scale * vmap(encode)(copies, step_views) @ text.t()  # [B, 1 + K, C]
            losses, values = [], []
            for b in range(batch):
                logits = both[b, 1:]
                actions = top_k_actions(logits.detach(), options.sample_k)
                losses.append(reinforce_loss(logits, actions, rewards[b].gather(1, actions)))
                values.append(expected_reward(logits.detach(), rewards[b]))
            optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            optimizer.step()
            for b, inp in enumerate(inputs):
                hooks[b].on_progress(Progress(
                    step=step + 1, total_steps=options.steps, loss=float(losses[b].detach()),
                    metric="reward", value=values[b],
                    top_k=ranked(both[b, 0].detach().softmax(-1), labels, inp.top_k)))
        with torch.no_grad():
            final = clip.logit_scale * vmap(encode)(copies, step_views) @ text.t()
    compute_ms = watch.ms()
    tuned_count = int(sum(p.numel() for p in tuned.values()))
    return [build_result(final[b, 0].softmax(-1), zeroshot_tops[b], inp, {
        "steps": options.steps, "views": options.n_views, "views_kept": int(selected.shape[1]),
        "lr": options.effective_lr, "tuned_parameters": tuned_count,
        "reward_before": round(reward_before[b], 6),
        "reward_after": round(expected_reward(final[b, 1:], rewards[b]), 6),
        "compute_ms": compute_ms, "episode_batch": batch,
    }) for b, inp in enumerate(inputs)]
