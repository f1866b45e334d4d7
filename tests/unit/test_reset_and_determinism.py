"""Episodic reset (bit for bit, also after a failure half-way) and per-seed determinism."""

import pytest
import torch

from adapters.engine import Engine, RunContext
from adapters.types import Hooks
from contract.catalog import get_spec, method_names
from contract.request import normalize
from tests.conftest import LABELS, make_exemplars, self_reward_models


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_identical(before, module):
    after = module.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{key} changed"
    assert all(not p.requires_grad and p.grad is None for p in module.parameters())


CASES = [(m, {}) for m in ("zeroshot", "tpt", "rlcf", "rlcf-tune")] + [
    ("rlcf-tune", {"params": "all", "lr": 1e-2}),
    ("rlcf-tune", {"momentum": 0.5, "momentum_every": 1, "lr": 1e-2}),
]


@pytest.mark.parametrize(("method", "options"), CASES)
def test_models_are_bit_for_bit_unchanged_after_a_request(engine, image, method, options):
    policy, reward = engine.models.policy.clip.model, engine.models.reward.classifier.clip.model
    before_p, before_r = _state(policy), _state(reward)
    for seed in (0, 1):
        engine.classify(method, image, LABELS, options=options, seed=seed)
    _assert_identical(before_p, policy)
    _assert_identical(before_r, reward)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(("method", "options"), [
    ("tpt", {"steps": 3}), ("rlcf", {"steps": 3}),
    ("rlcf-tune", {"steps": 3, "params": "norm", "lr": 1e-2}),
    ("rlcf-tune", {"steps": 3, "params": "all", "lr": 1e-2}),
])
def test_models_are_restored_when_a_request_fails_half_way(engine, image, method, options):
    policy = engine.models.policy.clip.model
    before = _state(policy)

    def explode(progress):
        if progress.step == 2:
            raise Boom("client went away")

    with pytest.raises(Boom):
        engine.classify(method, image, LABELS, options=options, hooks=Hooks(on_progress=explode))
    _assert_identical(before, policy)


@pytest.mark.parametrize("method", method_names())
def test_same_seed_same_answer(engine, image, method):
    def strip(result):
        data = result.to_dict()
        data["metrics"].pop("compute_ms")
        return data

    exemplars = make_exemplars()  # used by mllm, ignored by the others
    # Online methods (TDA, and auto's TDA tier) answer from state earlier requests built: each
    # run starts empty.
    stateful = any(get_spec(m).stateful for m in normalize(method, LABELS).methods_called)
    first = strip((Engine(engine.models) if stateful else engine).classify(
        method, image, LABELS, seed=3, context=RunContext(exemplars=exemplars)))
    second = strip((Engine(engine.models) if stateful else engine).classify(
        method, image, LABELS, seed=3, context=RunContext(exemplars=exemplars)))
    assert first == second


def test_different_seeds_tune_on_different_views(engine, image):
    a = engine.classify("tpt", image, LABELS, seed=1).metrics
    b = engine.classify("tpt", image, LABELS, seed=2).metrics
    assert a["entropy_before"] != b["entropy_before"]


def test_momentum_buffer_moves_the_reset_point_but_not_the_model(models, image):
    engine = Engine(self_reward_models(models))
    options = {"momentum": 0.5, "momentum_every": 1, "lr": 5e-2, "params": "norm"}
    policy = models.policy.clip.model
    before = _state(policy)
    first = engine.classify("rlcf-tune", image, LABELS, options=options,
                            context=RunContext(state_key="tenant-a"))
    second = engine.classify("rlcf-tune", image, LABELS, options=options,
                             context=RunContext(state_key="tenant-a"))
    fresh = engine.classify("rlcf-tune", image, LABELS, options=options,
                            context=RunContext(state_key="tenant-b"))
    _assert_identical(before, policy)
    # tenant-a's second request starts from the EMA, so it sees a different starting reward;
    # tenant-b starts from the original weights like tenant-a's first request did.
    assert second.metrics["reward_before"] != first.metrics["reward_before"]
    assert fresh.metrics["reward_before"] == first.metrics["reward_before"]
