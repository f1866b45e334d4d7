"""RLCF, prompt variant: policy-gradient on the CLIPScore of a larger frozen CLIP.

Step 0 scores all views with the initial prompt and keeps the most confident ones; the reward
model encodes only those, once. Each step samples the policy's top-K classes per kept view,
rewards them, and raises the log-probability of above-average ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.base import Method, Stopwatch, build_result, ranked, zeroshot_guess
from adapters.options import check_range
from adapters.policy_gradient import RewardContext, expected_reward, reinforce_loss, top_k_actions
from adapters.selection import select_confident
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress
from adapters.views import make_views


@dataclass(frozen=True)
class RLCFOptions:
    steps: int = 3
    """Optimisation steps (published: 3)."""
    lr: float = 7e-3
    """AdamW learning rate of the context vectors."""
    weight_decay: float = 5e-4
    """AdamW weight decay."""
    n_views: int = 64
    """Views of the test image: the clean one plus random resized crops."""
    selection: float = 0.1
    """Fraction of views kept by lowest entropy (0.1 of 64 keeps 6)."""
    sample_k: int = 3
    """Actions per view: the policy's top-K classes."""
    ctx_init: str = "a photo of a"
    """Phrase whose token embeddings initialise the context vectors."""

    def __post_init__(self) -> None:
        check_range("steps", self.steps, 1, 64)
        check_range("lr", self.lr, 0.0, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("n_views", self.n_views, 1, 256)
        check_range("selection", self.selection, 0.0, 1.0)
        check_range("sample_k", self.sample_k, 1, 100)


class RLCFPrompt(Method):
    name = "rlcf"
    description = "RLCF (prompt): tune the prompt context by policy gradient on a CLIP reward."
    options_type = RLCFOptions
    needs_reward_model = True

    def run(
        self, inp: MethodInput, models: Models, options: RLCFOptions, hooks: Hooks
    ) -> AdaptationResult:
        assert models.reward is not None
        watch = Stopwatch()
        policy = models.policy
        views = make_views(inp.image, options.n_views, policy.clip.image_size, inp.seed)
        with torch.no_grad():
            features = policy.clip.encode_images(views)
        _, zeroshot_top = zeroshot_guess(models, inp, features[:1], hooks)

        learner = policy.prompt_learner(inp.labels, options.ctx_init)
        optimizer = torch.optim.AdamW(
            [learner.ctx], lr=options.lr, weight_decay=options.weight_decay
        )
        with torch.no_grad():
            initial = policy.logits(features, learner())
        selected = select_confident(initial, options.selection)
        reward = RewardContext(models.reward, views[selected], inp.labels)
        reward_before = expected_reward(initial[selected], reward.matrix)

        for step in range(options.steps):
            text = learner()
            logits = policy.logits(features[selected], text)
            actions = top_k_actions(logits.detach(), options.sample_k)
            loss = reinforce_loss(logits, actions, reward.rewards(actions))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                probs = policy.logits(features[:1], text).softmax(-1)[0]
            hooks.on_progress(Progress(
                step=step + 1, total_steps=options.steps, loss=float(loss.detach()), metric="reward",
                value=expected_reward(logits.detach(), reward.matrix),
                top_k=ranked(probs, inp.labels, inp.top_k),
            ))

        with torch.no_grad():
            text = learner()
            reward_after = expected_reward(policy.logits(features[selected], text), reward.matrix)
            probs = policy.logits(features[:1], text).softmax(-1)[0]
        metrics = {
            "steps": options.steps, "views": options.n_views, "views_kept": int(selected.numel()),
            "reward_before": round(reward_before, 6), "reward_after": round(reward_after, 6),
            "compute_ms": watch.ms(),
        }
        return build_result(probs, zeroshot_top, inp, metrics)
