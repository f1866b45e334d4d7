"""TPT: tune the prompt context to minimise the marginal entropy over confident views.

The image encoder is frozen, so view features are computed once and every step only runs the
text tower over the class prompts (truncated to the longest prompt). Several images run as one
episode set (``adapters.prompt_tuning``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adapters.base import Method, Stopwatch, build_result
from adapters.prompt_tuning import start_episodes
from adapters.selection import marginal_entropy
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from contract.method_options import TPTOptions


def _entropy_objective(_: int, logits: torch.Tensor) -> tuple[torch.Tensor, float]:
    loss = marginal_entropy(logits)
    return loss, float(loss.detach())


class TPT(Method):
    name = "tpt"
    episodes_batch = True

    def run(
        self, inp: MethodInput, models: Models, options: TPTOptions, hooks: Hooks
    ) -> AdaptationResult:
        return self.run_batch([inp], models, options, [hooks])[0]

    def run_batch(
        self, inputs: Sequence[MethodInput], models: Models, options: TPTOptions,
        hooks: Sequence[Hooks],
    ) -> list[AdaptationResult]:
        watch = Stopwatch()
        episodes = start_episodes(inputs, models, hooks, options, options.ctx_init)
        kept_initial = episodes.kept(episodes.initial_logits)
        entropy_before = [float(marginal_entropy(logits)) for logits in kept_initial]
        optimizer = torch.optim.AdamW([episodes.ctx], lr=options.lr,
                                      weight_decay=options.weight_decay)
        episodes.run_steps(optimizer, options.steps, _entropy_objective, "entropy", hooks)
        probs, kept_logits = episodes.finish()
        compute_ms = watch.ms()
        return [build_result(probs[b], episodes.zeroshot_tops[b], inp, {
            "steps": options.steps, "views": options.n_views,
            "views_kept": int(episodes.selected.shape[1]),
            "entropy_before": round(entropy_before[b], 6),
            "entropy_after": round(float(marginal_entropy(kept_logits[b])), 6),
            "compute_ms": compute_ms, "episode_batch": episodes.size,
        }) for b, inp in enumerate(inputs)]
