"""RLCF, image-encoder variant: policy-gradient on a CLIP reward, tuning the visual encoder.

Class text features are fixed (cached per label set); each step re-encodes only the kept views
with gradients. By default only normalisation-layer affine parameters are tuned (cheap to
snapshot and restore); ``params="all"`` tunes the whole visual encoder, as the reference does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adapters.base import Method, Stopwatch, build_result, encode_views, ranked
from adapters.momentum import MomentumBank
from adapters.policy_gradient import RewardContext, expected_reward, reinforce_loss, top_k_actions
from adapters.selection import select_confident
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress
from adapters.weight_copies import tune_copies
from adapters.weights import load_into, snapshot, tunable_parameters, tuning
from contract.method_options import RLCFTuneOptions


class RLCFTune(Method):
    name = "rlcf-tune"
    episodes_batch = True

    def __init__(self) -> None:
        self.momentum = MomentumBank()

    def run(
        self, inp: MethodInput, models: Models, options: RLCFTuneOptions, hooks: Hooks
    ) -> AdaptationResult:
        assert models.reward is not None
        watch = Stopwatch()
        policy = models.policy
        clip = policy.clip
        templates = (options.class_template,) if options.class_template else inp.templates
        text = policy.class_features(inp.labels, templates)
        views_set, features_set, tops = encode_views(models, [inp], options, [hooks])
        views, features, zeroshot_top = views_set[0], features_set[0], tops[0]

        params = tunable_parameters(clip.model.visual, options.params)  # type: ignore[arg-type]
        state_key = f"{policy.name}|{options.params}|{inp.state_key}"
        state = self.momentum.get(state_key) if options.momentum > 0 else None
        with tuning(params):
            if state is not None and state.reset_point is not None:
                load_into(params, state.reset_point)
                with torch.no_grad():
                    features = clip.encode_images(views)
            start = snapshot(params) if options.momentum > 0 else {}
            optimizer = torch.optim.AdamW(
                list(params.values()), lr=options.effective_lr, weight_decay=options.weight_decay
            )
            initial = policy.logits(features, text)
            selected = select_confident(initial, options.selection)
            kept_views = views[selected]
            reward = RewardContext(models.reward, kept_views, inp.labels, options.reward_template)
            reward_before = expected_reward(initial[selected], reward.matrix)

            # The clean view rides along in each step's forward so progress reports its top-k;
            # per-view encoders (LayerNorm, eval-mode BatchNorm) keep the kept views unaffected.
            step_views = torch.cat([views[:1], kept_views])
            for step in range(options.steps):
                both = policy.logits(clip.encode_images(step_views), text)
                logits = both[1:]
                actions = top_k_actions(logits.detach(), options.sample_k)
                loss = reinforce_loss(logits, actions, reward.rewards(actions))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                hooks.on_progress(Progress(
                    step=step + 1, total_steps=options.steps, loss=float(loss.detach()), metric="reward",
                    value=expected_reward(logits.detach(), reward.matrix),
                    top_k=ranked(both[0].detach().softmax(-1), inp.labels, inp.top_k),
                ))

            with torch.no_grad():
                final = policy.logits(clip.encode_images(step_views), text)
            reward_after = expected_reward(final[1:], reward.matrix)
            probs = final[0].softmax(-1)
            if options.momentum > 0:
                self.momentum.update(
                    state_key, start, snapshot(params), options.momentum, options.momentum_every
                )
        metrics = {
            "steps": options.steps, "views": options.n_views, "views_kept": int(selected.numel()),
            "lr": options.effective_lr,
            "tuned_parameters": int(sum(p.numel() for p in params.values())),
            "reward_before": round(reward_before, 6), "reward_after": round(reward_after, 6),
            "compute_ms": watch.ms(),
        }
        return build_result(probs, zeroshot_top, inp, metrics)

    def run_batch(
        self, inputs: Sequence[MethodInput], models: Models, options: RLCFTuneOptions,
        hooks: Sequence[Hooks],
    ) -> list[AdaptationResult]:
        """Several images as one episode set, each with its own copy of the tuned weights
        (``adapters.weight_copies``). With momentum the images run one after another: each
        one's starting point is the previous one's result. Under half-precision autocast they
        also run one after another: vmap's backward then fails on CUDA (measured on an H200:
        "expected input and grad types to match")."""
        half = models.policy.clip.precision != "fp32"  # autocast: CUDA only (models.device)
        if len(inputs) == 1 or options.momentum > 0 or half:
            return super().run_batch(inputs, models, options, hooks)
        return tune_copies(inputs, models, options, hooks)
