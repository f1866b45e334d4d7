"""The loop TPT and RLCF (prompt) share: encode the views once, keep the confident ones,
then take optimisation steps on the context vectors against a method-specific objective."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from adapters.base import ranked, zeroshot_guess
from adapters.options import ViewOptions
from adapters.selection import select_confident
from adapters.types import Hooks, MethodInput, Models, Progress, ScoredLabel
from adapters.views import views_for
from models.prompt_learner import PromptLearner

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, float]]
"""Logits of the kept views -> (loss to minimise, the metric value to report)."""


@dataclass
class PromptSession:
    inp: MethodInput
    models: Models
    views: torch.Tensor
    features: torch.Tensor
    """Frozen image features of every view: computed once, reused by every step."""
    learner: PromptLearner
    selected: torch.Tensor
    initial_logits: torch.Tensor
    zeroshot_top: list[ScoredLabel]

    def logits(self, text: torch.Tensor, which: torch.Tensor | slice) -> torch.Tensor:
        return self.models.policy.logits(self.features[which], text)

    def run_steps(
        self, optimizer: torch.optim.Optimizer, steps: int, objective: Objective, metric: str,
        hooks: Hooks,
    ) -> None:
        for step in range(steps):
            text = self.learner()
            loss, value = objective(self.logits(text, self.selected))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                probs = self.logits(text, slice(0, 1)).softmax(-1)[0]
            hooks.on_progress(Progress(
                step=step + 1, total_steps=steps, loss=float(loss.detach()), metric=metric,
                value=value, top_k=ranked(probs, self.inp.labels, self.inp.top_k),
            ))

    @torch.no_grad()
    def finish(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean-view probabilities, kept-view logits) under the tuned context."""
        text = self.learner()
        return self.logits(text, slice(0, 1)).softmax(-1)[0], self.logits(text, self.selected)


def start_session(
    inp: MethodInput, models: Models, hooks: Hooks, options: ViewOptions, ctx_init: str,
) -> PromptSession:
    policy = models.policy
    views = views_for(inp.image, options, policy.clip.image_size, inp.seed)
    with torch.no_grad():
        features = policy.clip.encode_images(views)
    _, zeroshot_top = zeroshot_guess(models, inp, features[:1], hooks)
    learner = policy.prompt_learner(inp.labels, ctx_init)
    with torch.no_grad():
        initial = policy.logits(features, learner())
    selected = select_confident(initial, options.selection)
    return PromptSession(inp, models, views, features, learner, selected, initial, zeroshot_top)
