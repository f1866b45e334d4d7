"""The drift statistics and score (service.queue.drift) on hand-made observations."""

from __future__ import annotations

import math

import pytest

from service.queue.drift import ALERT_THRESHOLD, DriftWindow, Observation, observe, report


def answer(scores: list[float], labels: list[str], changed: bool = False, **metrics: int) -> dict:  # type: ignore[type-arg]
    return {"zeroshot_top_k": [{"label": label, "score": s} for label, s in zip(labels, scores, strict=True)],
            "changed": changed, "metrics": metrics}


def test_an_observation_is_what_the_answer_says_and_survives_its_encoding():
    seen = observe(answer([0.6, 0.3], ["b", "a"], changed=True, escalations=2), ["a", "b", "c"])
    assert seen is not None
    assert (seen.confidence, seen.label, seen.changed, seen.escalations) == (0.6, 1, True, 2)
    rest = 0.1  # the labels outside the top-k are one bucket
    assert seen.entropy == pytest.approx(-sum(p * math.log(p) for p in (0.6, 0.3, rest)))
    assert Observation.decode(seen.encode()) == Observation(0.6, round(seen.entropy, 5), 1, True, 2)
    plain = observe(answer([1.0], ["a"]), ["a"])
    assert plain is not None and plain.escalations is None and plain.entropy == 0.0
    assert Observation.decode(plain.encode().encode()) == plain
    assert observe({"label_set": "x", "confused_pairs": []}, ["a"]) is None  # not a classify answer


def steady(n: int, confidence: float = 0.8, wobble: float = 0.1) -> list[Observation]:
    return [Observation(confidence + (wobble if i % 2 else -wobble), 0.5, i % 5, False) for i in range(n)]


def test_no_score_until_the_reference_and_the_window_are_full():
    window = DriftWindow(reference_size=20, window_size=8)
    scores = [window.add(o).score for o in steady(20)]
    assert scores[:19] == [None] * 19 and scores[19] is not None


def test_a_steady_stream_scores_low_and_a_drop_in_confidence_alarms():
    window = DriftWindow(reference_size=20, window_size=8)
    for o in steady(40):
        quiet = window.add(o)
    assert quiet.score is not None and quiet.score < 1 and not quiet.alerting
    for o in steady(8, confidence=0.5):
        drifted = window.add(o)
    # (0.5 - 0.8) / 0.1 x sqrt(8): the window's mean, in the reference's spread
    assert drifted.shifts["confidence"].z == pytest.approx(-0.3 / 0.1 * math.sqrt(8), rel=1e-6)
    assert drifted.score == pytest.approx(abs(drifted.shifts["confidence"].z)) and drifted.alerting
    assert drifted.score > ALERT_THRESHOLD


def test_a_statistic_that_never_moved_is_judged_against_its_floor():
    reference = [Observation(0.9, 0.5, 0, False) for _ in range(20)]  # no spread at all
    window = [Observation(0.9, 0.5, 0, False)] * 7 + [Observation(0.9, 0.5, 0, True)]
    drift = report(reference, window, reference_size=20, window_size=8)
    assert drift.shifts["changed"].z == pytest.approx((1 / 8) / 0.1 * math.sqrt(8))  # floor 0.1
    assert drift.shifts["confidence"].z == 0 and "escalated" not in drift.shifts  # (no auto answers)
    assert drift.label_distance == 0


def test_auto_answers_add_the_escalation_rate_and_labels_their_distance():
    reference = [Observation(0.9, 0.5, i % 2, False, 0) for i in range(20)]
    window = [Observation(0.9, 0.5, 2, False, 1) for _ in range(8)]
    drift = report(reference, window, reference_size=20, window_size=8)
    assert drift.shifts["escalated"].window == 1.0 and drift.shifts["escalated"].reference == 0.0
    assert drift.label_distance == pytest.approx(1.0)  # disjoint labels
    body = drift.to_dict()
    assert body["alerting"] and set(body["statistics"]) == {"confidence", "entropy", "changed", "escalated"}
