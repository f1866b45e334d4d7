"""What goes into and comes out of a method."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from adapters.state_store import StateStore
from models.classifier import ClipClassifier
from models.mllm.prompts import MLLMScorer
from models.reward import Reward


@dataclass(frozen=True)
class ScoredLabel:
    label: str
    score: float


@dataclass(frozen=True)
class Progress:
    """One optimisation step (or one scored candidate), reported as it happens."""

    step: int
    total_steps: int
    loss: float | None
    metric: str
    """What ``value`` is: "entropy", "reward" or a method-specific name."""
    value: float
    top_k: list[ScoredLabel]
    detail: dict[str, Any] | None = None
    """Method-specific facts about the step (e.g. which candidate the MLLM scored)."""


def scored_dicts(top: Sequence[ScoredLabel]) -> list[dict[str, Any]]:
    """Scored labels as JSON-ready dicts (as ``asdict`` gives them)."""
    return [{"label": s.label, "score": s.score} for s in top]


_FLAT = (str, int, float, bool, type(None))
"""Metric values that ``AdaptationResult.to_dict`` copies as they are."""


@dataclass
class AdaptationResult:
    label: str
    score: float
    top_k: list[ScoredLabel]
    zeroshot_top_k: list[ScoredLabel]
    changed: bool
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``asdict(self)``, built directly when the metrics are flat (the usual case):
        ``asdict`` deep-copies through every field, ~40 us per result, paid per image."""
        if not all(isinstance(value, _FLAT) for value in self.metrics.values()):
            return asdict(self)
        return {"label": self.label, "score": self.score,
                "top_k": scored_dicts(self.top_k), "zeroshot_top_k": scored_dicts(self.zeroshot_top_k),
                "changed": self.changed, "metrics": dict(self.metrics)}

    def is_finite(self) -> bool:
        """False when the adaptation diverged (a NaN or infinite score anywhere)."""
        scores = [self.score, *(s.score for s in self.top_k), *(s.score for s in self.zeroshot_top_k)]
        return all(math.isfinite(score) for score in scores)

    def zeroshot_fallback(self) -> AdaptationResult:
        """The zero-shot answer in place of a diverged adaptation, saying so in ``metrics``."""
        finite_metrics = {key: value for key, value in self.metrics.items()
                          if not (isinstance(value, float) and not math.isfinite(value))}
        best = self.zeroshot_top_k[0]
        return AdaptationResult(label=best.label, score=best.score, top_k=list(self.zeroshot_top_k),
                                zeroshot_top_k=list(self.zeroshot_top_k), changed=False,
                                metrics={**finite_metrics, "diverged": True, "fallback": "zeroshot"})


@dataclass(frozen=True)
class MethodInput:
    image: Image.Image
    labels: tuple[str, ...]
    templates: tuple[str, ...]
    top_k: int = 5
    seed: int = 0
    state_key: str = "default"
    """Scope of any state a method keeps across requests (e.g. tenant + label set)."""
    exemplars: Mapping[int, Sequence[Image.Image]] | None = None
    """Labelled exemplar images per class index (from a label set), for methods that need them."""
    label_set_version: str | None = None
    """Content hash of the label set the labels and exemplars came from (a cache key)."""
    update_id: str | None = None
    """Identity of this image's job (job id and image index): online state is updated at most
    once per id, also when the job is redelivered. None: always update (CLI, benchmarks)."""
    state_store: StateStore | None = None
    """Where methods with online state (TDA) keep it; None: the method's in-process store."""


@dataclass
class Models:
    """The models a worker keeps loaded."""

    policy: ClipClassifier
    reward: Reward | None = None
    mllm: MLLMScorer | None = None


def _ignore(_: Any) -> None:
    return None


@dataclass
class Hooks:
    """Callbacks a method calls as it goes; the service turns them into events."""

    on_zeroshot: Callable[[list[ScoredLabel]], None] = _ignore
    on_progress: Callable[[Progress], None] = _ignore
    on_settled: Callable[[AdaptationResult], None] = _ignore
    """The image's final answer, when it is known before ``run_batch`` returns (``auto``: an
    image settled by zero-shot while its set-mates escalate); the caller may record it now.
    The same result is still in what ``run_batch`` returns."""
