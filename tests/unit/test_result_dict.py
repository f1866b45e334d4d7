"""``AdaptationResult.to_dict`` is ``asdict``'s answer, also where it builds it directly."""

from dataclasses import asdict

from adapters.types import AdaptationResult, ScoredLabel


def result(metrics: dict) -> AdaptationResult:
    return AdaptationResult(label="cat", score=0.75,
                            top_k=[ScoredLabel("cat", 0.75), ScoredLabel("dog", 0.25)],
                            zeroshot_top_k=[ScoredLabel("dog", 0.6), ScoredLabel("cat", 0.4)], changed=True,
                            metrics=metrics)


def test_flat_metrics_give_asdicts_answer_and_a_copy():
    original = result({"steps": 3, "compute_ms": 4.5, "model": "RN50", "changed": True, "gate": None})
    data = original.to_dict()
    assert data == asdict(original)
    data["metrics"]["queue_ms"] = 1.0  # the worker adds to it: the result must not change
    data["top_k"][0]["label"] = "x"
    assert "queue_ms" not in original.metrics and original.top_k[0].label == "cat"


def test_nested_metrics_are_copied_deeply_as_asdict_does():
    nested = {"candidates": [ScoredLabel("cat", 0.5)], "detail": {"scores": [1, 2]}}
    original = result(nested)
    data = original.to_dict()
    assert data == asdict(original)
    assert data["metrics"]["candidates"] == [{"label": "cat", "score": 0.5}]
    data["metrics"]["detail"]["scores"].append(3)
    assert nested["detail"]["scores"] == [1, 2]
