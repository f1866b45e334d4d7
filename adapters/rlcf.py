"""RLCF, prompt variant: policy-gradient on the CLIPScore of a larger frozen CLIP.

Step 0 scores all views with the initial prompt and keeps the most confident ones; the reward
model encodes only those, once (for every image of an episode set in one pass). Each step takes
the policy's top-K classes per kept view as actions, rewards them, and raises the
log-probability of the above-average ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adapters.base import Method, Stopwatch, build_result
from adapters.policy_gradient import expected_reward, reinforce_loss, top_k_actions
from adapters.prompt_tuning import start_episodes
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from contract.method_options import RLCFOptions


class RLCFPrompt(Method):
    name = "rlcf"
    episodes_batch = True

    def run(
        self, inp: MethodInput, models: Models, options: RLCFOptions, hooks: Hooks
    ) -> AdaptationResult:
        return self.run_batch([inp], models, options, [hooks])[0]

    def run_batch(
        self, inputs: Sequence[MethodInput], models: Models, options: RLCFOptions,
        hooks: Sequence[Hooks],
    ) -> list[AdaptationResult]:
        assert models.reward is not None
        watch = Stopwatch()
        episodes = start_episodes(inputs, models, hooks, options, options.ctx_init)
        kept_views = episodes.kept(episodes.views)
        rewards = models.reward.reward_matrix(kept_views.flatten(0, 1), inputs[0].labels,
                                              options.reward_template).view(episodes.size, -1,
                                                                            len(inputs[0].labels))
        kept_initial = episodes.kept(episodes.initial_logits)
        reward_before = [expected_reward(kept_initial[b], rewards[b]) for b in range(episodes.size)]

        def objective(b: int, logits: torch.Tensor) -> tuple[torch.Tensor, float]:
            actions = top_k_actions(logits.detach(), options.sample_k)
            loss = reinforce_loss(logits, actions, rewards[b].gather(1, actions))
            return loss, expected_reward(logits.detach(), rewards[b])

        optimizer = torch.optim.AdamW(
            [episodes.ctx], lr=options.lr, weight_decay=options.weight_decay
        )
        episodes.run_steps(optimizer, options.steps, objective, "reward", hooks)
        probs, kept_logits = episodes.finish()
        compute_ms = watch.ms()
        return [build_result(probs[b], episodes.zeroshot_tops[b], inp, {
            "steps": options.steps, "views": options.n_views,
            "views_kept": int(episodes.selected.shape[1]),
            "reward_before": round(reward_before[b], 6),
            "reward_after": round(expected_reward(kept_logits[b], rewards[b]), 6),
            "compute_ms": compute_ms, "episode_batch": episodes.size,
        }) for b, inp in enumerate(inputs)]
