"""Several images tuned as one episode set give each image the result it gets alone."""

import pytest
import torch

from adapters.engine import Engine, EpisodeItem
from adapters.types import Hooks
from contract.request import MethodRequest, normalize
from tests.conftest import LABELS, make_image, self_reward_models

CASES = [("tpt", {"steps": 3, "lr": 0.05}), ("rlcf", {"steps": 3, "lr": 0.05, "sample_k": 3}),
         ("rlcf-tune", {"steps": 3, "lr": 0.01}), ("rlcf-tune", {"steps": 3, "params": "all", "lr": 1e-3})]


def _top(result):
    return [(s.label, s.score) for s in result.top_k]


@pytest.mark.parametrize(("method", "options"), CASES)
def test_episode_set_matches_images_run_alone(models, method, options):
    engine = Engine(self_reward_models(models))
    images = [make_image(seed) for seed in (1, 2, 3, 4)]
    alone_progress: list[list] = [[] for _ in images]
    alone = [engine.classify(method, image, LABELS, options=options, seed=10 + i, top_k=len(LABELS),
                        hooks=Hooks(on_progress=alone_progress[i].append))
             for i, image in enumerate(images)]
    together_progress: list[list] = [[] for _ in images]
    together = engine.run_episodes(
        normalize(method, LABELS, options=options, top_k=len(LABELS)),
        [EpisodeItem(image, 10 + i, Hooks(on_progress=together_progress[i].append))
         for i, image in enumerate(images)])

    for a, t in zip(alone, together, strict=True):
        assert [s.label for s in a.top_k] == [s.label for s in t.top_k]
        torch.testing.assert_close(torch.tensor([s.score for s in t.top_k]),
                                   torch.tensor([s.score for s in a.top_k]), atol=2e-5, rtol=0)
        assert _top(a) != [(s.label, s.score) for s in a.zeroshot_top_k]  # the tuning did move it
        assert t.metrics["episode_batch"] == len(images) and a.metrics.get("episode_batch", 1) == 1
        for key in ("entropy_after", "reward_after", "views_kept"):
            if key in a.metrics:
                assert abs(a.metrics[key] - t.metrics[key]) < 1e-4, key
    # Each image's events come as its own steps happen, with its own values.
    for a, t in zip(alone_progress, together_progress, strict=True):
        assert [p.step for p in t] == [1, 2, 3]
        assert [round(p.value, 4) for p in t] == [round(p.value, 4) for p in a]


def test_different_seeds_give_different_views_within_a_set(models):
    """The set is not one image's episode copied: each image keeps its own seed's views."""
    engine = Engine(models)
    image = make_image(5)
    results = engine.run_episodes(normalize("tpt", LABELS, options={"steps": 1, "lr": 0.05}),
                                  [EpisodeItem(image, 0), EpisodeItem(image, 1)])
    alone = [engine.classify("tpt", image, LABELS, options={"steps": 1, "lr": 0.05}, seed=s)
             for s in (0, 1)]
    assert results[0].metrics["entropy_before"] != results[1].metrics["entropy_before"]
    for r, a in zip(results, alone, strict=True):
        assert abs(r.metrics["entropy_before"] - a.metrics["entropy_before"]) < 1e-5


def test_zero_votes_each_image_on_its_own_views_within_a_set(models):
    engine = Engine(models)
    images = [make_image(s) for s in (1, 2, 3)]
    together = engine.run_episodes(normalize("zero", LABELS, options={"n_views": 32}),
                                   [EpisodeItem(i, 3 + n) for n, i in enumerate(images)])
    alone = [engine.classify("zero", i, LABELS, seed=3 + n, options={"n_views": 32})
             for n, i in enumerate(images)]
    assert [_top(r) for r in together] == [_top(r) for r in alone]
    assert [r.metrics["votes"] for r in together] == [r.metrics["votes"] for r in alone]
    assert {r.metrics["episode_batch"] for r in together} == {3}


def test_methods_without_episode_sets_run_images_one_after_another(models):
    """TDA updates its cache image by image, so a set is the images in order."""
    images = [make_image(s) for s in (1, 2)]
    together = Engine(models).run_episodes(normalize("tda", LABELS), [EpisodeItem(i, 3) for i in images])
    engine = Engine(models)
    alone = [engine.classify("tda", i, LABELS, seed=3) for i in images]
    assert [_top(r) for r in together] == [_top(r) for r in alone]


def test_rlcf_tune_sets_leave_the_shared_model_untouched(models):
    engine = Engine(self_reward_models(models))
    before = {k: v.clone() for k, v in models.policy.clip.model.state_dict().items()}
    engine.run_episodes(normalize("rlcf-tune", LABELS, options={"steps": 2, "params": "all", "lr": 1e-3}),
                        [EpisodeItem(make_image(s), s) for s in (1, 2)])
    after = models.policy.clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in models.policy.clip.model.parameters())


def test_a_set_runs_the_request_it_is_given_without_validating_it_again(models, monkeypatch):
    """A request is normalised once, where it arrives (each validation of rlcf's options costs
    ~0.15 ms): a set runs with it as it is, and gives what a set run from the request read back
    from a job (its wire form) gives."""
    engine = Engine(self_reward_models(models))
    request = normalize("rlcf", LABELS, options={"steps": 1, "lr": 0.05, "sample_k": 3}, top_k=3)
    items = [EpisodeItem(make_image(seed), seed) for seed in (1, 2)]
    first = engine.run_episodes(request, items)

    def refuse(*_args, **_kwargs):
        raise AssertionError("validated again")

    monkeypatch.setattr("contract.request.parse_options", refuse)  # what normalize validates with
    again = engine.run_episodes(MethodRequest.from_wire(request.wire()), items)
    assert [_top(r) for r in again] == [_top(r) for r in first]
