"""``auto``: answer each image with the cheapest tier that settles it.

Zero-shot first (its guess is streamed at once, as every method does); while the answer's
confidence (``criterion``) is under the threshold, the next tier runs: a whole other method
(``contract.tiers``), called exactly as a request for it would be, so the answer a tier gives
is that method's answer. Progress events say when and why it escalates; the result's metrics
say which tier answered and why it stopped there.

A tier that keeps online state (TDA) keeps it where that method does (the tenant's and label
set's ``tda`` group): the images ``auto`` escalates to TDA feed the same cache as ``tda``
requests, and ``DELETE /v1/method-state/tda`` resets it.

Several images with one request (the worker's episode set of concurrent ``auto`` jobs) share
the zero-shot pass; the images that escalate to a tier run it together, as that method's own
episode set where it has one (TPT, RLCF), one after another where not (TDA, in order), so
each answer is still the one its tier gives to that request. An image settled early is
answered at once, not after its set-mates' tiers.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.base import Method, Stopwatch
from adapters.registry import create_method
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress, ScoredLabel
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


@dataclass
class Climb:
    """Where one image stands on the ladder."""

    top: list[ScoredLabel]
    """The current answer (at least 2 labels, for margins)."""
    threshold: float
    """What its confidence must reach to settle (zero-shot's, then the tiers')."""
    metrics: dict[str, Any] = field(default_factory=lambda: {"steps": 0, "views": 1})
    """The answering tier's own metrics."""
    answered: str = "zeroshot"
    escalations: int = 0


class Auto(Method):
    name = "auto"
    episodes_batch = True
    """Several images share one zero-shot pass, and those that escalate to a tier run it
    together (as that method's episode set, where it has one)."""

    def __init__(self) -> None:
        self.costs: dict[str, deque[float]] = {}
        """Recent ms per call of each tier (as written), on this worker."""
        self.methods: dict[str, Method] = {}

    def run(self, inp: MethodInput, models: Models, options: AutoOptions, hooks: Hooks) -> AdaptationResult:
        return self.run_batch([inp], models, options, [hooks])[0]

    def run_batch(self, inputs: Sequence[MethodInput], models: Models, options: AutoOptions,
                  hooks: Sequence[Hooks]) -> list[AdaptationResult]:
        """Each image climbs on its own; a tier runs once for all the images that reach it. An
        image settled before the others is answered at once (``Hooks.on_settled``). In a set,
        ``max_ms`` counts the set's time so far (what each image waits)."""
        watch = Stopwatch()
        # Margins need the second label: tiers run with at least 2, the answer is cut back.
        wide = [replace(inp, top_k=max(2, inp.top_k)) for inp in inputs]
        # (zero-shot's own batch, its guesses unreported: they are sent cut to each top_k below)
        zeroshot = self.method("zeroshot").run_batch(wide, models, None, [Hooks() for _ in wide])
        zeroshot_tops = [result.top_k for result in zeroshot]
        climbs = []
        for inp, hook, top in zip(inputs, hooks, zeroshot_tops, strict=True):
            hook.on_zeroshot(top[: inp.top_k])
            climbs.append(Climb(top, options.threshold))
        results: dict[int, AdaptationResult] = {}

        def settle(i: int, reason: str) -> None:
            results[i] = self.answer(climbs[i], zeroshot_tops[i], inputs[i].top_k, options, reason, watch)
            hooks[i].on_settled(results[i])

        def settled(i: int) -> bool:
            return confidence(climbs[i].top, options.criterion) >= climbs[i].threshold

        climbing = list(range(len(inputs)))
        tiers = tiers_of(options)
        for index, tier in enumerate(tiers):
            for i in filter(settled, climbing):
                settle(i, "confident")
            climbing = [i for i in climbing if i not in results]
            if climbing and options.max_ms and watch.ms() + self.expected_ms(tier) > options.max_ms:
                for i in climbing:
                    settle(i, "max_ms")
                climbing = []
            if not climbing:
                break
            for i in climbing:
                hooks[i].on_progress(self.escalation(climbs[i], index, tiers, options, inputs[i].top_k))
            answers = self.run_tier(tier, [wide[i] for i in climbing], models, [hooks[i] for i in climbing])
            for i, result in zip(climbing, answers, strict=True):
                climbs[i] = Climb(result.top_k, options.settled_after_tier, result.metrics, tier.text,
                                  escalations=index + 1)
        capped = len(tiers) < len(parse_tiers(options.tiers))
        for i in climbing:
            settle(i, "confident" if settled(i) else "max_tiers" if capped else "last_tier")
        return [results[i] for i in range(len(inputs))]

    @staticmethod
    def escalation(climb: Climb, index: int, tiers: Sequence[Tier], options: AutoOptions,
                   top_k: int) -> Progress:
        """The event that says why an image goes on to tier ``index``."""
        current = confidence(climb.top, options.criterion)
        return Progress(step=index + 1, total_steps=len(tiers), loss=None, metric="escalate", value=current,
                        top_k=climb.top[:top_k],
                        detail={"tier": tiers[index].text, "from": climb.answered,
                                "criterion": options.criterion, "confidence": round(current, 6),
                                "threshold": climb.threshold})

    @staticmethod
    def answer(climb: Climb, zeroshot_top: list[ScoredLabel], top_k: int, options: AutoOptions,
               reason: str, watch: Stopwatch) -> AdaptationResult:
        metrics = {**climb.metrics, "tier": climb.answered, "escalations": climb.escalations,
                   "settled_by": reason, "criterion": options.criterion,
                   "confidence": round(confidence(climb.top, options.criterion), 6), "compute_ms": watch.ms()}
        top = climb.top[:top_k]
        return AdaptationResult(label=top[0].label, score=top[0].score, top_k=top,
                                zeroshot_top_k=zeroshot_top[:top_k],
                                changed=top[0].label != zeroshot_top[0].label, metrics=metrics)

    def method(self, name: str) -> Method:
        if name not in self.methods:
            self.methods[name] = create_method(name)
        return self.methods[name]

    def run_tier(self, tier: Tier, inputs: list[MethodInput], models: Models,
                 hooks: list[Hooks]) -> list[AdaptationResult]:
        """The tier's method for these images, as requests for it would run (several as its
        episode set); its zero-shot guess is not sent again, its progress events say which
        tier they come from."""
        def tagged(h: Hooks) -> Hooks:
            def on_progress(p: Progress) -> None:
                h.on_progress(replace(p, detail={**(p.detail or {}), "tier": tier.text}))
            return Hooks(on_progress=on_progress)

        watch = Stopwatch()
        results = self.method(tier.method).run_batch(inputs, models, tier.options, [tagged(h) for h in hooks])
        self.costs.setdefault(tier.text, deque(maxlen=COST_WINDOW)).append(watch.ms())
        return results

    def expected_ms(self, tier: Tier) -> float:
        """The tier's median recent cost here (per call: a set's time, in a set); 0 before it
        first ran (it is then let run)."""
        recent = self.costs.get(tier.text)
        return statistics.median(recent) if recent else 0.0
