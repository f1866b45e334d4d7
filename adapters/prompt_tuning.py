"""The loop TPT and RLCF (prompt) share, for one image or several at once: encode the views
once, keep the confident ones, then take optimisation steps on the context vectors against a
method-specific objective.

Several images (the worker's concurrent jobs with the same labels and options) run as one
episode set: all their views go through the image tower in one pass, each image has its own
context in a stacked ``[B, n_ctx, W]`` parameter, and each step is one text-tower pass over
B x C prompts. Each image's loss depends only on its own context and AdamW is elementwise, so
the summed loss gives every image exactly the updates it would get alone (to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from adapters.base import encode_views, ranked
from adapters.selection import select_confident
from adapters.types import Hooks, MethodInput, Models, Progress, ScoredLabel
from contract.options import ViewOptions
from models.prompt_learner import PromptLearner

Objective = Callable[[int, torch.Tensor], tuple[torch.Tensor, float]]
"""(image index in the set, logits of its kept views) -> (loss to minimise, metric to report)."""


@dataclass
class PromptEpisodes:
    inputs: Sequence[MethodInput]
    models: Models
    views: torch.Tensor
    """[B, V, 3, H, W] pixel views of every image."""
    features: torch.Tensor
    """[B, V, D] frozen image features of every view: computed once, reused by every step."""
    learner: PromptLearner
    """The label set's frozen prompt pieces (its own ``ctx`` is the starting point only)."""
    ctx: nn.Parameter
    """[B, n_ctx, W]: one context per image, the only tensor the steps change."""
    selected: torch.Tensor
    """[B, K] kept views of each image, most confident first."""
    initial_logits: torch.Tensor
    """[B, V, C] logits of every view under the initial context."""
    zeroshot_tops: list[list[ScoredLabel]]
    first_text: torch.Tensor | None
    """Class features under the initial contexts, with their graph: the initial logits came
    from them, and step 0 reuses them instead of running the text tower again."""

    @property
    def size(self) -> int:
        return len(self.inputs)

    def logits(self, text: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """[B, N, D] image features x [B, C, D] class features -> [B, N, C]."""
        return self.models.policy.clip.logit_scale * features @ text.transpose(1, 2)

    def kept(self, tensor: torch.Tensor) -> torch.Tensor:
        """The kept views' rows of a [B, V, ...] tensor: [B, K, ...]."""
        index = self.selected.view(*self.selected.shape, *([1] * (tensor.dim() - 2)))
        return tensor.gather(1, index.expand(-1, -1, *tensor.shape[2:]))

    def run_steps(
        self, optimizer: torch.optim.Optimizer, steps: int, objective: Objective, metric: str,
        hooks: Sequence[Hooks],
    ) -> None:
        kept_features = self.kept(self.features)
        for step in range(steps):
            text = self.first_text if step == 0 and self.first_text is not None \
                else self.learner.encode_contexts(self.ctx)
            self.first_text = None
            logits = self.logits(text, kept_features)
            losses, values = zip(*(objective(b, logits[b]) for b in range(self.size)), strict=True)
            optimizer.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            optimizer.step()
            with torch.no_grad():
                probs = self.logits(text, self.features[:, :1]).softmax(-1)[:, 0]
            for b, inp in enumerate(self.inputs):
                hooks[b].on_progress(Progress(
                    step=step + 1, total_steps=steps, loss=float(losses[b].detach()), metric=metric,
                    value=values[b], top_k=ranked(probs[b], inp.labels, inp.top_k),
                ))

    @torch.no_grad()
    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean-view probabilities [B, C], kept-view logits [B, K, C]) under the tuned contexts."""
        text = self.learner.encode_contexts(self.ctx)
        return (self.logits(text, self.features[:, :1]).softmax(-1)[:, 0],
                self.logits(text, self.kept(self.features)))


def start_episodes(
    inputs: Sequence[MethodInput], models: Models, hooks: Sequence[Hooks], options: ViewOptions,
    ctx_init: str,
) -> PromptEpisodes:
    """Inputs share labels and templates (the worker groups them so); seeds may differ."""
    policy = models.policy
    views, features, zeroshot_tops = encode_views(models, inputs, options, hooks)
    batch = len(inputs)
    learner = policy.prompt_learner(inputs[0].labels, ctx_init)
    ctx = nn.Parameter(learner.ctx.detach().unsqueeze(0).repeat(batch, 1, 1))
    first_text = learner.encode_contexts(ctx)
    initial = policy.clip.logit_scale * features @ first_text.detach().transpose(1, 2)
    selected = torch.stack([select_confident(initial[b], options.selection) for b in range(batch)])
    return PromptEpisodes(inputs, models, views, features, learner, ctx, selected, initial,
                          zeroshot_tops, first_text)
