"""Input drift per tenant and label set: what the worker records of each answer, and the score
the API reads from it.

Every classify image the worker answers adds one ``Observation`` (its zero-shot confidence and
entropy, its zero-shot label, whether adaptation changed the label, how many tiers ``auto``
escalated through) to its group's two lists, in the same Lua step as its result
(``scripts.FINISH_IMAGE``): the *reference*, the group's first ``reference_size`` observations
(since it was created or reset), and the *window*, its last ``window_size``. ``DriftReport``
compares them: each statistic's window mean as a z-score against the reference (its spread
floored, so a statistic that never moved cannot alarm on a tiny change), and the score is the
largest. Under a stable input stream the score stays near 0-3; when the inputs shift (sketches
instead of photos) the model's zero-shot confidence drops and the score climbs within a window.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.queue.keys import Keys
from service.queue.schemas import as_text


@dataclass(frozen=True)
class DriftLimits:
    """How much is kept per scope, for how many scopes per key, and how long (settings
    ``TTA_DRIFT_*``, ``TTA_MAX_DRIFT_SCOPES_PER_KEY``)."""

    reference_size: int = 200
    window_size: int = 32
    max_scopes_per_key: int = 64
    ttl_s: int = 7 * 86_400


ALERT_THRESHOLD = 6.0
"""The score above which a group is reported as drifting (``alerting``); the shipped alert rule
(docker/prometheus/alerts.yml, TTAInputDrift) uses the same number."""

STD_FLOOR = {"confidence": 0.02, "entropy": 0.02, "changed": 0.1, "escalated": 0.1}
"""Smallest spread a statistic is judged against (a reference where it never moved)."""


@dataclass(frozen=True)
class Observation:
    confidence: float
    """Zero-shot top-1 probability."""
    entropy: float
    """Zero-shot entropy (nats) of the top-k the request asked for, the rest as one bucket."""
    label: int
    """Index of the zero-shot top-1 label."""
    changed: bool
    escalations: int | None = None
    """``auto`` only: tiers run after zero-shot."""

    def encode(self) -> str:
        escalations = "" if self.escalations is None else str(self.escalations)
        return f"{self.confidence:.5f},{self.entropy:.5f},{self.label},{int(self.changed)},{escalations}"

    @classmethod
    def decode(cls, text: str | bytes) -> Observation:
        confidence, entropy, label, changed, escalations = as_text(text).split(",")
        return cls(float(confidence), float(entropy), int(label), changed == "1",
                   int(escalations) if escalations else None)


def observe(result: dict[str, Any], labels: Sequence[str]) -> Observation | None:
    """The observation of one answered image (a result as ``AdaptationResult.to_dict`` gives
    it); None when it has no zero-shot guess to observe."""
    top = result.get("zeroshot_top_k") or []
    if not top:
        return None
    scores = [max(0.0, float(s["score"])) for s in top]
    rest = max(0.0, 1.0 - sum(scores))
    entropy = -sum(p * math.log(p) for p in (*scores, rest) if p > 0)
    try:
        label = list(labels).index(top[0]["label"])
    except ValueError:
        label = -1
    escalations = result.get("metrics", {}).get("escalations")
    return Observation(scores[0], entropy, label, bool(result.get("changed")),
                       None if escalations is None else int(escalations))


@dataclass(frozen=True)
class Shift:
    reference: float
    window: float
    z: float


@dataclass
class DriftReport:
    """A group's window against its reference. ``score`` is None while either is not full."""

    reference_n: int
    window_n: int
    score: float | None
    shifts: dict[str, Shift] = field(default_factory=dict)
    label_distance: float | None = None
    """Total-variation distance between the window's and the reference's zero-shot label
    distributions (0: the same; 1: disjoint). Reported, not scored: 25 classes in a window of
    32 make it noisy."""

    @property
    def alerting(self) -> bool:
        return self.score is not None and self.score > ALERT_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {"score": None if self.score is None else round(self.score, 3), "alerting": self.alerting,
                "reference_n": self.reference_n, "window_n": self.window_n,
                "statistics": {name: {"reference": round(s.reference, 4), "window": round(s.window, 4),
                                      "z": round(s.z, 3)} for name, s in self.shifts.items()},
                "label_distance": None if self.label_distance is None else round(self.label_distance, 4)}


def _values(observations: Sequence[Observation], name: str) -> list[float]:
    if name == "escalated":
        return [float((o.escalations or 0) > 0) for o in observations if o.escalations is not None]
    if name == "changed":
        return [float(o.changed) for o in observations]
    return [float(getattr(o, name)) for o in observations]


def report(reference: Sequence[Observation], window: Sequence[Observation], *,
           reference_size: int, window_size: int) -> DriftReport:
    drift = DriftReport(len(reference), len(window), None)
    if len(reference) < reference_size or len(window) < window_size:
        return drift
    for name, floor in STD_FLOOR.items():
        ref, win = _values(reference, name), _values(window, name)
        if len(ref) < reference_size / 2 or len(win) < window_size / 2:
            continue  # (escalations: only auto's answers have them)
        spread = max(statistics.pstdev(ref), floor)
        ref_mean, win_mean = statistics.fmean(ref), statistics.fmean(win)
        drift.shifts[name] = Shift(ref_mean, win_mean, (win_mean - ref_mean) / spread * math.sqrt(len(win)))
    drift.score = max(abs(s.z) for s in drift.shifts.values())
    drift.label_distance = _label_distance(reference, window)
    return drift


def _label_distance(reference: Sequence[Observation], window: Sequence[Observation]) -> float:
    labels = {o.label for o in reference} | {o.label for o in window}
    return 0.5 * sum(abs(sum(o.label == c for o in window) / len(window)
                         - sum(o.label == c for o in reference) / len(reference)) for c in labels)


class DriftWindow:
    """The two lists as FINISH_IMAGE keeps them, in one process (the drift bench)."""

    def __init__(self, reference_size: int, window_size: int) -> None:
        self.reference_size, self.window_size = reference_size, window_size
        self.reference: list[Observation] = []
        self.window: deque[Observation] = deque(maxlen=window_size)

    def add(self, observation: Observation) -> DriftReport:
        if len(self.reference) < self.reference_size:
            self.reference.append(observation)
        self.window.append(observation)
        return report(self.reference, self.window, reference_size=self.reference_size,
                      window_size=self.window_size)


async def read_reports(client: Any, keys: Keys, scopes: Sequence[str],
                       limits: DriftLimits) -> list[DriftReport]:
    """Each scope's report, from its two lists (one round trip for all)."""
    pipe = client.pipeline(transaction=False)
    for scope in scopes:
        pipe.lrange(keys.drift_reference(scope), 0, -1)
        pipe.lrange(keys.drift_window(scope), 0, -1)
    raw = await pipe.execute() if scopes else []
    decoded = [[Observation.decode(o) for o in observations] for observations in raw]
    return [report(decoded[2 * i], decoded[2 * i + 1], reference_size=limits.reference_size,
                   window_size=limits.window_size) for i in range(len(scopes))]


async def scores_by_owner(client: Any, keys: Keys, owners: Sequence[str],
                          limits: DriftLimits) -> dict[str, float]:
    """Each key's highest drift score over its watched label sets (0 while none has a full
    reference and window; keys with none watched are left out): what the API exports to
    Prometheus, one series per key. Two round trips, whatever the number of keys."""
    pipe = client.pipeline(transaction=False)
    for owner in owners:
        pipe.smembers(keys.drift_index(owner))
    indexes = await pipe.execute() if owners else []
    scopes = {owner: sorted(as_text(s) for s in index) for owner, index in zip(owners, indexes, strict=True)
              if index}
    every = [scope for mine in scopes.values() for scope in mine]
    reports = dict(zip(every, await read_reports(client, keys, every, limits), strict=True))
    return {owner: max((s for s in (reports[scope].score for scope in mine) if s is not None), default=0.0)
            for owner, mine in scopes.items()}
