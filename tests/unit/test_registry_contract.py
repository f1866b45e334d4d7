
"""Every registered method honours one contract."""

import dataclasses

import pytest

from adapters.engine import RunContext
from adapters.registry import create_method
from adapters.types import Hooks
from contract.catalog import get_spec, method_names, method_specs
from contract.options import options_schema
from tests.conftest import LABELS, make_exemplars


@pytest.mark.parametrize("name", method_names())
def test_method_contract(engine, image, name):
    method, spec = create_method(name), get_spec(name)
    assert method.name == spec.name == name and spec.description
    assert dataclasses.is_dataclass(spec.options_type)
    assert spec.options_type.__dataclass_params__.frozen
    schema = options_schema(spec.options_type)
    assert all(opt["doc"] for opt in schema), f"{name}: every option needs a one-line doc"

    events = []
    hooks = Hooks(on_zeroshot=lambda top: events.append(("zeroshot", top)),
                  on_progress=lambda p: events.append(("progress", p)))
    result = engine.classify(name, image, LABELS, top_k=3, hooks=hooks,
                             context=RunContext(exemplars=make_exemplars()))

    assert result.label in LABELS
    assert len(result.top_k) == 3 and result.top_k[0].label == result.label
    scores = [s.score for s in result.top_k]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert result.score == scores[0]
    assert len(result.zeroshot_top_k) == 3
    assert result.changed == (result.label != result.zeroshot_top_k[0].label)
    assert {"steps", "compute_ms"} <= result.metrics.keys()
    # The zero-shot guess comes first, once; then one progress event per step (auto: of the
    # tier that answered, after the events that say why it escalated).
    assert events[0][0] == "zeroshot" and events[0][1] == result.zeroshot_top_k
    assert all(e[0] == "progress" for e in events[1:])
    progress = [e[1] for e in events[1:] if e[1].metric != "escalate"
                and (e[1].detail or {}).get("tier", result.metrics.get("tier")) == result.metrics.get("tier")]
    assert [p.step for p in progress] == list(range(1, result.metrics["steps"] + 1))
    assert all(len(p.top_k) == 3 for p in progress)


def test_list_methods_describes_options():
    infos = {spec.name: spec.describe() for spec in method_specs()}
    assert set(infos) == {"zeroshot", "zero", "tda", "tpt", "rlcf", "rlcf-tune", "mllm", "auto"}
    assert infos["mllm"]["needs_exemplars"] and infos["mllm"]["needs_mllm"]
    mllm = {o["name"]: o["default"] for o in infos["mllm"]["options"]}
    assert mllm == {"n_candidates": 6, "draws": 3, "threshold": 0.6, "shots": 2, "negative_shot": "paper"}
    assert infos["rlcf"]["needs_reward_model"] and not infos["tpt"]["needs_reward_model"]
    tpt = {o["name"]: o for o in infos["tpt"]["options"]}
    assert tpt["lr"]["default"] == 5e-3 and tpt["steps"]["default"] == 1
    rlcf = {o["name"]: o for o in infos["rlcf"]["options"]}
    assert rlcf["lr"]["default"] == 7e-3 and rlcf["steps"]["default"] == 3
    assert infos["rlcf"]["presets"]["reference"] == {"ctx_init": "learned:coop"}
    assert rlcf["sample_k"]["default"] == 3 and rlcf["weight_decay"]["default"] == 5e-4
    tune = {o["name"]: o for o in infos["rlcf-tune"]["options"]}
    assert tune["lr"]["default"] is None and tune["params"]["default"] == "norm"
    assert tune["momentum"]["default"] == 0.0


def test_rlcf_tune_learning_rate_follows_the_tuned_parameters():
    from contract.method_options import RLCFTuneOptions

    assert RLCFTuneOptions(params="all").effective_lr == 1e-5  # RLCF's published rate
    assert RLCFTuneOptions().effective_lr == 1e-3  # norm layers: TENT's rate
    assert RLCFTuneOptions(lr=0.05).effective_lr == 0.05
