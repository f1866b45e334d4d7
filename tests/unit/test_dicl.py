"""DICL's decision logic with a scripted scorer, and the mllm method on a tiny CLIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.dicl import confusable_class, confused_pairs, rectify, transition_matrix
from adapters.engine import Engine, RunContext
from adapters.types import Hooks, Models
from contract.errors import InvalidInputError, MissingMLLMError
from tests.conftest import LABELS, ScriptedScorer, make_exemplars, make_image

N = len(LABELS)


def probs_with(order: list[int], values: list[float]) -> torch.Tensor:
    probs = torch.zeros(N)
    probs[order] = torch.tensor(values)
    return probs


def confusion(taken_for: int, most_confused: int) -> torch.Tensor:
    """A transition matrix where class ``most_confused`` is the one most often taken for ``taken_for``."""
    matrix = torch.full((N, N), 0.05)
    matrix.fill_diagonal_(0.6)
    matrix[most_confused, taken_for] = 0.3
    return matrix / matrix.sum(dim=1, keepdim=True)


def run(probs, scorer, matrix=None, **options):  # type: ignore[no-untyped-def]
    settings = {"n_candidates": 4, "draws": 3, "threshold": 0.6, **options}
    return rectify(probs, make_image(7), matrix if matrix is not None else confusion(0, 4),
                   make_exemplars(), LABELS, scorer, rng=np.random.default_rng(0), **settings)


def test_confident_correct_label_passes_the_gate_with_r_calls():
    scorer = ScriptedScorer(supported=LABELS[0])
    decision = run(probs_with([0, 1, 2, 3, 4], [0.9, 0.04, 0.03, 0.02, 0.01]), scorer)
    assert decision.label == 0 and decision.gate_passed
    assert decision.gate_score == pytest.approx((0.9 + 0.9) / 2)
    assert decision.calls == 3 and scorer.calls == [3]


def test_wrong_top1_is_rectified_to_the_candidate_the_scorer_supports():
    scorer = ScriptedScorer(supported=LABELS[3])
    decision = run(probs_with([0, 1, 3, 2, 4], [0.4, 0.3, 0.2, 0.06, 0.04]), scorer)
    assert not decision.gate_passed and decision.gate_score == pytest.approx((0.1 + 0.4) / 2)
    assert decision.label == 3
    assert decision.candidates == [0, 1, 3, 2]
    assert scorer.calls == [3, 9]  # the gate, then the other three candidates in one batch
    assert decision.p_true == pytest.approx({0: 0.1, 1: 0.1, 3: 0.9, 2: 0.1})


def test_the_erroneous_exemplar_comes_from_the_most_confused_class():
    scorer = ScriptedScorer(supported="nothing")
    top1, candidate, confused = 0, 2, 4
    run(probs_with([top1, candidate, 1, 3], [0.35, 0.3, 0.2, 0.15]), scorer,
        matrix=confusion(taken_for=candidate, most_confused=confused))
    about_candidate = [p for p in scorer.prompts if p.shots[-1].label == LABELS[candidate]]
    assert len(about_candidate) == 3
    for prompt in about_candidate:
        wrong, right, query = prompt.shots
        assert wrong.image.info["class"] == confused and wrong.label == LABELS[top1] and wrong.answer is False
        assert right.image.info["class"] == candidate and right.answer is True
        assert query.answer is None and "class" not in query.image.info
    # The three draws use different exemplars of each class.
    assert len({id(p.shots[1].image) for p in about_candidate}) == 3


def test_official_code_negative_shot_is_the_candidates_own_exemplar_asked_about_top1():
    scorer = ScriptedScorer(supported="nothing")
    top1, second, third = 0, 2, 1
    run(probs_with([top1, second, third, 3], [0.35, 0.3, 0.2, 0.15]), scorer,
        matrix=confusion(taken_for=second, most_confused=4), negative_shot="code")
    for prompt in scorer.prompts:
        wrong, right, query = prompt.shots
        candidate = LABELS.index(query.label)
        assert wrong.label == LABELS[top1] and wrong.answer is False
        # the gate (candidate = top-1) shows the runner-up's exemplar; the others their own
        assert wrong.image.info["class"] == (second if candidate == top1 else candidate)
        assert right.image.info["class"] == candidate


@pytest.mark.parametrize("shots", [0, 1])
def test_fewer_shots_drop_the_negative_then_the_positive_turn(shots):
    scorer = ScriptedScorer(supported=LABELS[3])
    decision = run(probs_with([0, 1, 3, 2, 4], [0.4, 0.3, 0.2, 0.06, 0.04]), scorer, shots=shots)
    assert decision.label == 3
    assert {len(p.shots) for p in scorer.prompts} == {shots + 1}
    assert all(p.shots[-1].answer is None for p in scorer.prompts)
    if shots == 1:
        assert all(p.shots[0].answer is True and p.shots[0].label == p.shots[1].label
                   for p in scorer.prompts)


def test_top1_is_never_the_erroneous_class():
    matrix = confusion(taken_for=2, most_confused=0)  # class 0 is most taken for 2, but is top-1
    assert confusable_class(matrix, candidate=2, top1=0, available=set(range(N))) != 0
    assert confusable_class(matrix, candidate=1, top1=0, available={0, 1}) is None


def test_transition_matrix_from_exemplars(models):
    exemplars = make_exemplars()
    del exemplars[4]
    grad_enabled_in_pauses: list[bool] = []
    matrix = transition_matrix(models.policy, exemplars, LABELS, ("a photo of a {}.",),
                               between_classes=lambda: grad_enabled_in_pauses.append(torch.is_grad_enabled()))
    assert grad_enabled_in_pauses == [True] * 4  # a pause per class with exemplars, outside no-grad
    assert matrix.shape == (N, N)
    assert torch.allclose(matrix[:4].sum(dim=1), torch.ones(4), atol=1e-5)
    assert torch.isnan(matrix[4]).all()
    pairs = confused_pairs(matrix, LABELS, top=3)
    assert len(pairs) == 3 and all(p["true"] != p["taken_for"] for p in pairs)
    assert [p["rate"] for p in pairs] == sorted((p["rate"] for p in pairs), reverse=True)


def test_mllm_method_reports_candidates_and_events(models, image):
    probe = Engine(models).classify("zeroshot", image, LABELS)
    second = probe.top_k[1].label
    engine = Engine(Models(policy=models.policy, mllm=ScriptedScorer(supported=second)))
    events = []
    hooks = Hooks(on_zeroshot=lambda top: events.append(("zeroshot", None)),
                  on_progress=lambda p: events.append((p.metric, p.detail)))
    result = engine.classify("mllm", image, LABELS, hooks=hooks,
                        options={"threshold": 1.0}, context=RunContext(exemplars=make_exemplars()))
    assert result.label == second and result.changed
    assert result.zeroshot_top_k[0].label == probe.label
    metrics = result.metrics
    assert metrics["gate_passed"] is False and metrics["mllm_calls"] == 3 * 5
    assert {c["label"] for c in metrics["candidates"]} == set(LABELS)
    assert [e[0] for e in events] == ["zeroshot", "gate", "p_true", "p_true", "p_true", "p_true"]
    assert events[1][1]["candidate"] == probe.label


def test_mllm_method_needs_exemplars_for_every_class_and_an_mllm(models, image):
    exemplars = make_exemplars()
    exemplars[2] = []
    with pytest.raises(InvalidInputError, match="green tree") as info:
        Engine(models).classify("mllm", image, LABELS, context=RunContext(exemplars=exemplars))
    assert info.value.field == "label_set"
    with pytest.raises(MissingMLLMError):
        Engine(Models(policy=models.policy)).classify("mllm", image, LABELS,
               context=RunContext(exemplars=make_exemplars()))
