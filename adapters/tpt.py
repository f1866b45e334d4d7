"""TPT: tune the prompt context to minimise the marginal entropy over confident views.

The image encoder is frozen, so view features are computed once and every step only runs the
text tower over the class prompts (truncated to the longest prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.base import Method, Stopwatch, build_result, ranked, zeroshot_guess
from adapters.options import check_range
from adapters.selection import marginal_entropy, select_confident
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress
from adapters.views import make_views


@dataclass(frozen=True)
class TPTOptions:
    steps: int = 1
    """Optimisation steps (published: 1)."""
    lr: float = 5e-3
    """AdamW learning rate of the context vectors."""
    n_views: int = 64
    """Views of the test image: the clean one plus random resized crops."""
    selection: float = 0.1
    """Fraction of views kept by lowest entropy (0.1 of 64 keeps 6)."""
    ctx_init: str = "a photo of a"
    """Phrase whose token embeddings initialise the context vectors."""

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1, 64)
        check_range("lr", self.lr, 0.0, 1.0)
        check_range("n_views", self.n_views, 1, 256)
        check_range("selection", self.selection, 0.0, 1.0)


class TPT(Method):
    name = "tpt"
    description = "Test-time prompt tuning: minimise marginal entropy over confident views."
    options_type = TPTOptions

    def run(
        self, inp: MethodInput, models: Models, options: TPTOptions, hooks: Hooks
    ) -> AdaptationResult:
        watch = Stopwatch()
        policy = models.policy
        views = make_views(inp.image, options.n_views, policy.clip.image_size, inp.seed)
        with torch.no_grad():
            features = policy.clip.encode_images(views)
        _, zeroshot_top = zeroshot_guess(models, inp, features[:1], hooks)

        learner = policy.prompt_learner(inp.labels, options.ctx_init)
        optimizer = torch.optim.AdamW([learner.ctx], lr=options.lr)
        with torch.no_grad():
            initial = policy.logits(features, learner())
        selected = select_confident(initial, options.selection)
        entropy_before = float(marginal_entropy(initial[selected]))

        for step in range(options.steps):
            text = learner()
            logits = policy.logits(features[selected], text)
            loss = marginal_entropy(logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                probs = policy.logits(features[:1], text).softmax(-1)[0]
            hooks.on_progress(Progress(
                step=step + 1, total_steps=options.steps, loss=float(loss.detach()), metric="entropy",
                value=float(loss.detach()), top_k=ranked(probs, inp.labels, inp.top_k),
            ))

        with torch.no_grad():
            text = learner()
            entropy_after = float(marginal_entropy(policy.logits(features[selected], text)))
            probs = policy.logits(features[:1], text).softmax(-1)[0]
        metrics = {
            "steps": options.steps, "views": options.n_views, "views_kept": int(selected.numel()),
            "entropy_before": round(entropy_before, 6), "entropy_after": round(entropy_after, 6),
            "compute_ms": watch.ms(),
        }
        return build_result(probs, zeroshot_top, inp, metrics)
