"""ZERO (Farina et al., NeurIPS 2024): test-time augmentation with the softmax temperature at
zero. Encode the views in one batched forward, keep the most confident fraction, and predict
the class most of them vote for (each kept view votes for its argmax). No backpropagation.

Ties go to the tied class that the most confident kept view votes for (the reference's
"greedy break"). The reported score of a class is its share of the votes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from adapters.base import Method, Stopwatch, build_result, score_views
from adapters.selection import select_confident
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from contract.method_options import ZeroOptions

TIE_BREAK = 1e-7
"""Added to the winner's vote share so that ranking puts it first among equal shares."""


def zero_vote(kept_logits: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(winner, vote share per class [C]) of the kept views, most confident first."""
    votes = kept_logits.argmax(dim=-1)
    counts = torch.bincount(votes, minlength=kept_logits.shape[-1]).float()
    tied = set((counts == counts.max()).nonzero().flatten().tolist())
    winner = next(int(v) for v in votes.tolist() if v in tied)
    return winner, counts / votes.numel()


class Zero(Method):
    name = "zero"
    episodes_batch = True

    def run(
        self, inp: MethodInput, models: Models, options: ZeroOptions, hooks: Hooks
    ) -> AdaptationResult:
        return self.run_batch([inp], models, options, [hooks])[0]

    def run_batch(
        self, inputs: Sequence[MethodInput], models: Models, options: ZeroOptions,
        hooks: Sequence[Hooks],
    ) -> list[AdaptationResult]:
        """Several images' views in one forward pass (the worker's episode sets); each image
        votes on its own views."""
        watch = Stopwatch()
        _, zeroshot_tops, logits = score_views(models, inputs, options, hooks)
        results = []
        for b, inp in enumerate(inputs):
            selected = select_confident(logits[b], options.selection)
            winner, share = zero_vote(logits[b][selected])
            share[winner] += TIE_BREAK
            results.append((share.cpu(), zeroshot_tops[b], inp, {
                "steps": 0, "views": options.n_views, "views_kept": int(selected.numel()),
                "votes": round(float(share[winner]) * int(selected.numel()))}))
        compute_ms = watch.ms()
        return [build_result(share, top, inp, {**metrics, "compute_ms": compute_ms,
                                               "episode_batch": len(inputs)})
                for share, top, inp, metrics in results]
