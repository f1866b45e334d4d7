"""TPT: tune the prompt context to minimise the marginal entropy over confident views.

The image encoder is frozen, so view features are computed once and every step only runs the
text tower over the class prompts (truncated to the longest prompt).
"""

from __future__ import annotations

import torch

from adapters.base import Method, Stopwatch, build_result
from adapters.method_options import TPTOptions
from adapters.prompt_tuning import start_session
from adapters.selection import marginal_entropy
from adapters.types import AdaptationResult, Hooks, MethodInput, Models


def _entropy_objective(logits: torch.Tensor) -> tuple[torch.Tensor, float]:
    loss = marginal_entropy(logits)
    return loss, float(loss.detach())


class TPT(Method):
    name = "tpt"

    def run(
        self, inp: MethodInput, models: Models, options: TPTOptions, hooks: Hooks
    ) -> AdaptationResult:
        watch = Stopwatch()
        session = start_session(inp, models, hooks, options, options.ctx_init)
        entropy_before = float(marginal_entropy(session.initial_logits[session.selected]))
        optimizer = torch.optim.AdamW([session.learner.ctx], lr=options.lr,
                                      weight_decay=options.weight_decay)
        session.run_steps(optimizer, options.steps, _entropy_objective, "entropy", hooks)
        probs, kept_logits = session.finish()
        metrics = {
            "steps": options.steps, "views": options.n_views,
            "views_kept": int(session.selected.numel()),
            "entropy_before": round(entropy_before, 6),
            "entropy_after": round(float(marginal_entropy(kept_logits)), 6),
            "compute_ms": watch.ms(),
        }
        return build_result(probs, session.zeroshot_top, inp, metrics)
