"""``auto``: answer each image with the cheapest tier that settles it.

Zero-shot first (its guess is streamed at once, as every method does); while the answer's
confidence (``criterion``) is under the threshold, the next tier runs: a whole other method
(``contract.tiers``), called exactly as a request for it would be, so the answer a tier gives
is that method's answer. Progress events say when and why it escalates; the result's metrics
say which tier answered and why it stopped there.

A tier that keeps online state (TDA) keeps it where that method does (the tenant's and label
set's ``tda`` group): the images ``auto`` escalates to TDA feed the same cache as ``tda``
requests, and ``DELETE /v1/method-state/tda`` resets it.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import replace

import torch

from adapters.base import Method, Stopwatch, ranked
from adapters.registry import create_method
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress, ScoredLabel
from adapters.views import clean_view
from contract.method_options import AutoOptions
from contract.tiers import Tier, parse_tiers, tiers_of

COST_WINDOW = 32
"""Recent run times kept per tier for ``max_ms`` (their median is the tier's expected cost)."""


def confidence(top: list[ScoredLabel], criterion: str) -> float:
    """The answer's top probability, or its margin over the second (``top`` has >= 2 labels
    whenever there are 2 classes)."""
    first = top[0].score
    if criterion == "margin":
        return first - (top[1].score if len(top) > 1 else 0.0)
    return first


class Auto(Method):
    name = "auto"

    def __init__(self) -> None:
        self.costs: dict[str, deque[float]] = {}
        """Recent compute ms per tier (as written), on this worker."""
        self.methods: dict[str, Method] = {}

    def run(self, inp: MethodInput, models: Models, options: AutoOptions, hooks: Hooks) -> AdaptationResult:
        watch = Stopwatch()
        # Margins need the second label: tiers run with at least 2, the answer is cut back.
        wide = replace(inp, top_k=max(2, inp.top_k))
        zeroshot_top = self.zeroshot(wide, models)
        hooks.on_zeroshot(zeroshot_top[: inp.top_k])
        top, tier_metrics, answered = zeroshot_top, {"steps": 0, "views": 1}, "zeroshot"
        threshold, reason, escalations = options.threshold, "", 0
        tiers = tiers_of(options)
        for index, tier in enumerate(tiers):
            current = confidence(top, options.criterion)
            if current >= threshold:
                break
            if options.max_ms and watch.ms() + self.expected_ms(tier) > options.max_ms:
                reason = "max_ms"
                break
            hooks.on_progress(Progress(
                step=index + 1, total_steps=len(tiers), loss=None, metric="escalate", value=current,
                top_k=top[: inp.top_k],
                detail={"tier": tier.text, "from": answered, "criterion": options.criterion,
                        "confidence": round(current, 6), "threshold": threshold}))
            result = self.run_tier(tier, wide, models, hooks)
            top, tier_metrics, answered = result.top_k, result.metrics, tier.text
            threshold, escalations = options.settled_after_tier, index + 1
        if not reason:
            reason = ("confident" if confidence(top, options.criterion) >= threshold
                      else "max_tiers" if len(tiers) < len(parse_tiers(options.tiers)) else "last_tier")
        metrics = {**tier_metrics, "tier": answered, "escalations": escalations, "settled_by": reason,
                   "criterion": options.criterion, "confidence": round(confidence(top, options.criterion), 6),
                   "compute_ms": watch.ms()}
        top = top[: inp.top_k]
        return AdaptationResult(label=top[0].label, score=top[0].score, top_k=top,
                                zeroshot_top_k=zeroshot_top[: inp.top_k],
                                changed=top[0].label != zeroshot_top[0].label, metrics=metrics)

    @staticmethod
    def zeroshot(inp: MethodInput, models: Models) -> list[ScoredLabel]:
        policy = models.policy
        with torch.no_grad():
            features = policy.clip.encode_images(clean_view(inp.image, policy.clip.image_size)[None])
            probs = policy.logits(features, policy.class_features(inp.labels, inp.templates)).softmax(-1)[0]
        return ranked(probs, inp.labels, inp.top_k)

    def run_tier(self, tier: Tier, inp: MethodInput, models: Models, hooks: Hooks) -> AdaptationResult:
        """The tier's method, as a request for it would run; its zero-shot guess is not sent
        again, its progress events say which tier they come from."""
        def on_progress(p: Progress) -> None:
            hooks.on_progress(replace(p, detail={**(p.detail or {}), "tier": tier.text}))

        watch = Stopwatch()
        if tier.method not in self.methods:
            self.methods[tier.method] = create_method(tier.method)
        method = self.methods[tier.method]
        result = method.run(inp, models, tier.options, Hooks(on_progress=on_progress))
        self.costs.setdefault(tier.text, deque(maxlen=COST_WINDOW)).append(watch.ms())
        return result

    def expected_ms(self, tier: Tier) -> float:
        """The tier's median recent cost here; 0 before it first ran (it is then let run)."""
        recent = self.costs.get(tier.text)
        return statistics.median(recent) if recent else 0.0
