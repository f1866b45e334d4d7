"""RLCF, prompt variant: policy-gradient on the CLIPScore of a larger frozen CLIP.

Step 0 scores all views with the initial prompt and keeps the most confident ones; the reward
model encodes only those, once. Each step takes the policy's top-K classes per kept view as
actions, rewards them, and raises the log-probability of the above-average ones.
"""

from __future__ import annotations

import torch

from adapters.base import Method, Stopwatch, build_result
from adapters.method_options import RLCFOptions
from adapters.policy_gradient import RewardContext, expected_reward, reinforce_loss, top_k_actions
from adapters.prompt_tuning import start_session
from adapters.types import AdaptationResult, Hooks, MethodInput, Models


class RLCFPrompt(Method):
    name = "rlcf"

    def run(
        self, inp: MethodInput, models: Models, options: RLCFOptions, hooks: Hooks
    ) -> AdaptationResult:
        assert models.reward is not None
        watch = Stopwatch()
        session = start_session(inp, models, hooks, options, options.ctx_init)
        reward = RewardContext(models.reward, session.views[session.selected], inp.labels,
                               options.reward_template)
        reward_before = expected_reward(session.initial_logits[session.selected], reward.matrix)

        def objective(logits: torch.Tensor) -> tuple[torch.Tensor, float]:
            actions = top_k_actions(logits.detach(), options.sample_k)
            loss = reinforce_loss(logits, actions, reward.rewards(actions))
            return loss, expected_reward(logits.detach(), reward.matrix)

        optimizer = torch.optim.AdamW(
            [session.learner.ctx], lr=options.lr, weight_decay=options.weight_decay
        )
        session.run_steps(optimizer, options.steps, objective, "reward", hooks)
        probs, kept_logits = session.finish()
        metrics = {
            "steps": options.steps, "views": options.n_views,
            "views_kept": int(session.selected.numel()),
            "reward_before": round(reward_before, 6),
            "reward_after": round(expected_reward(kept_logits, reward.matrix), 6),
            "compute_ms": watch.ms(),
        }
        return build_result(probs, session.zeroshot_top, inp, metrics)
