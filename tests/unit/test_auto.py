"""``auto``: the tier that answers gives exactly its method's answer; it escalates only while
the answer is not settled, within its caps; its tiers are checked at intake."""

from __future__ import annotations

import dataclasses

import pytest

from adapters.auto import Auto
from adapters.engine import Engine, EpisodeItem, RunContext
from adapters.types import Hooks, Models, ScoredLabel
from contract.errors import InvalidOptionsError, MissingRewardModelError
from contract.request import normalize
from contract.tiers import tiers_of
from tests.conftest import LABELS, make_image


def recorded() -> tuple[list[tuple[str, object]], Hooks]:
    events: list[tuple[str, object]] = []
    return events, Hooks(on_zeroshot=lambda top: events.append(("zeroshot", top)),
                         on_progress=lambda p: events.append(("progress", p)))


def answer(result):  # type: ignore[no-untyped-def]
    """What the answering tier decides, exactly."""
    return result.label, result.score, result.top_k, result.changed


def same_guess(a: list[ScoredLabel], b: list[ScoredLabel]) -> bool:
    """Zero-shot guesses equal but for float rounding: auto encodes the clean view alone, a
    tuning method as the first of its batch of views (the last digit may differ by CPU)."""
    return [s.label for s in a] == [s.label for s in b] and \
        all(abs(x.score - y.score) <= 2e-6 for x, y in zip(a, b, strict=True))


def test_a_settled_zero_shot_answer_is_zero_shots_and_costs_no_tier(engine, image):
    events, hooks = recorded()
    auto = engine.classify("auto", image, LABELS, top_k=3, hooks=hooks, options={"threshold": 0.0})
    zeroshot = engine.classify("zeroshot", image, LABELS, top_k=3)
    assert answer(auto) == answer(zeroshot) and auto.zeroshot_top_k == zeroshot.zeroshot_top_k
    assert auto.metrics["tier"] == "zeroshot" and auto.metrics["escalations"] == 0
    assert auto.metrics["settled_by"] == "confident" and auto.metrics["steps"] == 0
    assert [kind for kind, _ in events] == ["zeroshot"]


def test_the_tier_that_answers_gives_exactly_its_methods_answer(engine, image):
    events, hooks = recorded()
    auto = engine.classify("auto", image, LABELS, top_k=3, seed=5, hooks=hooks,
                           options={"tiers": "tpt:steps=2", "threshold": 1.0, "tier_threshold": 1.0})
    tpt = engine.classify("tpt", image, LABELS, top_k=3, seed=5, options={"steps": 2})
    assert answer(auto) == answer(tpt) and same_guess(auto.zeroshot_top_k, tpt.zeroshot_top_k)
    assert {k: v for k, v in auto.metrics.items() if k in tpt.metrics and k != "compute_ms"} == \
        {k: v for k, v in tpt.metrics.items() if k != "compute_ms"}
    assert auto.metrics["tier"] == "tpt:steps=2" and auto.metrics["escalations"] == 1
    assert auto.metrics["settled_by"] == "last_tier"
    # One zero-shot guess, then why it escalated, then the tier's own steps, named by tier.
    assert events[0][0] == "zeroshot" and same_guess(events[0][1], tpt.zeroshot_top_k)
    progress = [p for kind, p in events[1:]]
    assert progress[0].metric == "escalate" and progress[0].detail["tier"] == "tpt:steps=2"
    assert progress[0].detail["from"] == "zeroshot" and progress[0].value == auto.zeroshot_top_k[0].score
    assert [(p.metric, p.step, p.detail["tier"]) for p in progress[1:]] == \
        [("entropy", 1, "tpt:steps=2"), ("entropy", 2, "tpt:steps=2")]


def test_an_online_tier_answers_as_its_method_does_and_keeps_its_state_there(models, image):
    """TDA as a tier: the same answer as ``tda`` on a fresh engine, written to tda's state."""
    alone, in_auto = Engine(models), Engine(models)
    context = RunContext(state_key="alice|set", update_id="job/0")
    tda = alone.classify("tda", image, LABELS, context=context)
    only_tda = {"tiers": "tda", "threshold": 1.0}
    auto = in_auto.classify("auto", image, LABELS, context=context, options=only_tda)
    assert answer(auto) == answer(tda) and same_guess(auto.zeroshot_top_k, tda.zeroshot_top_k)
    assert auto.metrics["cache_images"] == tda.metrics["cache_images"] == 1
    # Its update is recorded under tda's group for this tenant and label set, once per job image:
    # a redelivered image is not added twice, whichever method delivered it first.
    again = alone.classify("auto", image, LABELS, context=context, options=only_tda)
    assert again.metrics["cache_images"] == 1 and again.metrics["cache_updated"] is False
    assert alone.state_store.reset("tda:alice|set") and in_auto.state_store.reset("tda:alice|set")


def test_it_stops_at_the_first_settled_tier(engine, image, monkeypatch):
    """The second tier is never run when the first one's answer reaches tier_threshold."""
    ran: list[str] = []
    run_tier = Auto.run_tier

    def counting(self, tier, *args):  # type: ignore[no-untyped-def]
        ran.append(tier.text)
        return run_tier(self, tier, *args)

    monkeypatch.setattr(Auto, "run_tier", counting)
    settled = engine.classify("auto", image, LABELS, options={
        "tiers": "tpt,rlcf", "threshold": 1.0, "tier_threshold": 0.0})
    assert ran == ["tpt"] and settled.metrics["tier"] == "tpt"
    assert settled.metrics["settled_by"] == "confident"
    ran.clear()
    both = engine.classify("auto", image, LABELS, options={"tiers": "tpt,rlcf", "threshold": 1.0,
                                                           "tier_threshold": 1.0})
    assert ran == ["tpt", "rlcf"] and both.metrics["tier"] == "rlcf" and both.metrics["escalations"] == 2


def test_the_tier_cap_and_the_cost_ceiling_stop_escalation(engine, image):
    capped = engine.classify("auto", image, LABELS, options={"tiers": "tpt,rlcf", "threshold": 1.0,
                                                              "tier_threshold": 1.0, "max_tiers": 1})
    assert capped.metrics["tier"] == "tpt" and capped.metrics["settled_by"] == "max_tiers"
    none = engine.classify("auto", image, LABELS, options={"threshold": 1.0, "max_tiers": 0})
    assert none.metrics["tier"] == "zeroshot" and none.metrics["settled_by"] == "max_tiers"
    # The ceiling counts the tier's median recent cost on this engine.
    fresh = Engine(engine.models)
    options = {"tiers": "tpt", "threshold": 1.0}
    first = fresh.classify("auto", image, LABELS, options={**options, "max_ms": 60_000})
    assert first.metrics["tier"] == "tpt"
    method = fresh.method("auto")
    assert isinstance(method, Auto) and len(method.costs["tpt"]) == 1
    tpt_ms = method.expected_ms(tiers_of(normalize("auto", LABELS, options=options).options)[0])
    assert tpt_ms == method.costs["tpt"][0] > 0
    short = fresh.classify("auto", image, LABELS, options={**options, "max_ms": tpt_ms / 2})
    assert short.metrics["tier"] == "zeroshot" and short.metrics["settled_by"] == "max_ms"
    assert len(method.costs["tpt"]) == 1  # (not run)


def test_margin_criterion_reads_the_second_label_even_at_top_k_1(engine, image):
    result = engine.classify("auto", image, LABELS, top_k=1,
                             options={"criterion": "margin", "threshold": 0.0})
    full = engine.classify("zeroshot", image, LABELS, top_k=2)
    assert len(result.top_k) == 1 and len(result.zeroshot_top_k) == 1
    assert result.metrics["confidence"] == pytest.approx(full.top_k[0].score - full.top_k[1].score, abs=2e-6)


@pytest.mark.parametrize(("tiers", "says"), [
    ("auto", "cannot be a tier"), ("zeroshot", "cannot be a tier"), ("mllm", "cannot be a tier"),
    ("nope", "unknown method"), ("tpt:steps=999", "steps"), ("tpt:bogus=1", "bogus"),
    ("tpt:steps", "not option=value"), ("tpt,tpt,tpt,tpt,tpt", "at most 4"), ("tpt," * 200, "longer than"),
])
def test_a_bad_tier_is_refused_at_intake_naming_the_option(tiers, says):
    with pytest.raises(InvalidOptionsError) as refused:
        normalize("auto", LABELS, options={"tiers": tiers})
    assert refused.value.field == "options.tiers" and says in refused.value.message


def test_every_method_auto_calls_must_be_servable(models, image):
    assert normalize("auto", LABELS).methods_called == ("auto", "tda", "rlcf")
    assert normalize("auto", LABELS, options={"tiers": "tpt,tda,tpt:steps=2"}).methods_called == \
        ("auto", "tpt", "tda")
    no_reward = Engine(dataclasses.replace(models, reward=None))
    with pytest.raises(MissingRewardModelError):
        no_reward.classify("auto", image, LABELS)
    assert no_reward.classify("auto", image, LABELS, options={"tiers": "tpt"}).label in LABELS


def test_equivalent_tier_options_make_equal_requests():
    """The wire form keeps the tiers as written; the parsed tiers are equal when the options are."""
    a = normalize("auto", LABELS, options={"tiers": "rlcf:steps=10"})
    b = normalize("auto", LABELS, options={"tiers": "rlcf:steps=10+preset=\"default\""})
    assert tiers_of(a.options)[0].options == tiers_of(b.options)[0].options
    assert normalize("auto", LABELS).wire() == normalize("auto", LABELS, options={"max_tiers": 4}).wire()


def test_models_fixture_has_a_reward(models: Models):
    assert models.reward is not None  # (the tests above call rlcf tiers)


def test_in_a_set_each_image_climbs_alone_and_a_settled_one_is_answered_first(models):
    """An episode set of auto images: one zero-shot pass, the unsettled images run their tier
    together (RLCF's episode set), each answer the one it gets alone; an image settled by
    zero-shot is answered (on_settled) before any tier step of its set-mates."""
    engine = Engine(models)
    images = [make_image(seed) for seed in (1, 2, 3, 4)]
    confident = [engine.classify("zeroshot", i, LABELS).score for i in images]
    threshold = (sorted(confident)[-1] + sorted(confident)[-2]) / 2  # exactly one image settles
    options = {"tiers": "rlcf:steps=2", "threshold": threshold, "tier_threshold": 0.0}
    alone = [engine.classify("auto", i, LABELS, seed=10 + n, options=options) for n, i in enumerate(images)]
    timeline: list[tuple[int, str]] = []

    def hooks(n: int) -> Hooks:
        return Hooks(on_progress=lambda p: timeline.append((n, p.metric)),
                     on_settled=lambda r: timeline.append((n, f"settled:{r.metrics['tier']}")))

    together = engine.run_episodes(normalize("auto", LABELS, options=options),
                                   [EpisodeItem(i, 10 + n, hooks(n)) for n, i in enumerate(images)])
    for a, t in zip(alone, together, strict=True):
        assert (a.label, a.metrics["tier"], a.metrics["settled_by"]) == \
            (t.label, t.metrics["tier"], t.metrics["settled_by"])
        assert all(abs(x.score - y.score) <= 2e-5 for x, y in zip(a.top_k, t.top_k, strict=True))
    escalated = [n for n, t in enumerate(together) if t.metrics["tier"] == "rlcf:steps=2"]
    assert len(escalated) == 3 and all(together[n].metrics["episode_batch"] == 3 for n in escalated)
    first_settled = next(n for n in range(4) if n not in escalated)
    assert timeline[0] == (first_settled, "settled:zeroshot")  # before any escalation or step
    assert [entry for entry in timeline if entry[0] in escalated][:3] == [(n, "escalate") for n in escalated]
    assert sorted(n for n, what in timeline if what.startswith("settled")) == [0, 1, 2, 3]


def test_an_online_tier_in_a_set_updates_each_images_own_tenant_state(models):
    """Set-mates may be different tenants' (same request): TDA's update goes to each image's
    own state scope, once per job image."""
    engine = Engine(models)
    request = normalize("auto", LABELS, options={"tiers": "tda", "threshold": 1.0})
    items = [EpisodeItem(make_image(s), s, context=RunContext(state_key=key, update_id=f"job{s}/0"))
             for s, key in ((1, "alice|set"), (2, "bob|set"), (3, "alice|set"))]
    first = engine.run_episodes(request, items)
    assert [r.metrics["cache_images"] for r in first] == [1, 1, 2]
    again = engine.run_episodes(request, items)  # a redelivered set adds nothing
    assert [r.metrics["cache_updated"] for r in again] == [False, False, False]
    assert engine.state_store.reset("tda:alice|set") and engine.state_store.reset("tda:bob|set")
