"""Presets reproduce the reference, learned contexts load as the reference publishes them,
AugMix views, reward ensembles, and the training-free tiers (ZERO, TDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters.augmix import AugMixSpec, augmix
from adapters.engine import Engine, RunContext, load_models
from adapters.policy_gradient import RewardContext
from adapters.tda_cache import Entry, TDACache, add_entry, cache_logits
from adapters.views import make_views
from adapters.zero import zero_vote
from contract.errors import InvalidOptionsError, ModelLoadError
from contract.method_options import COOP, REFERENCE_TUNE_TEMPLATE
from contract.request import normalize
from models.classifier import ClipClassifier
from models.learned_context import configured_contexts, load_context_file, save_context
from models.reward import RewardEnsemble, RewardModel
from models.reward_spec import parse_reward_spec
from tests.conftest import LABELS, make_image


def test_reference_presets_fill_what_the_request_leaves_unset():
    rlcf = normalize("rlcf", LABELS, options={"preset": "reference"}).options
    assert (rlcf.ctx_init, rlcf.steps, rlcf.lr, rlcf.weight_decay, rlcf.sample_k) == (COOP, 3, 7e-3, 5e-4, 3)
    fine = normalize("rlcf", LABELS, options={"preset": "reference-fine-grained"}).options
    assert (fine.steps, fine.views) == (5, "augmix")
    tune = normalize("rlcf-tune", LABELS, options={"preset": "reference"}).options
    assert (tune.params, tune.effective_lr) == ("all", 1e-5)
    assert tune.class_template == tune.reward_template == REFERENCE_TUNE_TEMPLATE == "a_photo_of_a {}."
    tpt = normalize("tpt", LABELS, options={"preset": "reference"}).options
    assert (tpt.steps, tpt.lr, tpt.weight_decay, tpt.views) == (1, 5e-3, 0.01, "crops")
    # Explicit options win over the preset.
    assert normalize("rlcf", LABELS, options={"preset": "reference", "steps": 7}).options.steps == 7
    assert normalize("rlcf", LABELS).options.ctx_init == "a photo of a"  # the project's default


def test_a_10kb_ctx_init_is_rejected_before_queueing_naming_the_field():
    for bad in ("x" * 10_000, "learned:../../etc/passwd", "a\nphoto", " "):
        with pytest.raises(InvalidOptionsError) as err:
            normalize("tpt", LABELS, options={"ctx_init": bad})
        assert err.value.field == "options.ctx_init" and err.value.code == "invalid_options"


def test_coop_checkpoint_in_the_reference_format_round_trips(tmp_path, models):
    width = models.policy.tower.width
    ctx = torch.randn(4, width)
    reference = tmp_path / "model.pth.tar-50"
    torch.save({"state_dict": {"ctx": ctx, "token_prefix": torch.zeros(2, 1, width)}, "epoch": 50},
               reference)
    torch.testing.assert_close(load_context_file(reference), ctx)
    prefixed = tmp_path / "prompt_learner.pth"
    torch.save({"state_dict": {"prompt_learner.ctx": ctx}}, prefixed)
    torch.testing.assert_close(load_context_file(prefixed), ctx)
    ours = tmp_path / "ctx.safetensors"
    save_context(ours, ctx)
    torch.testing.assert_close(load_context_file(ours), ctx)
    torch.save({"state_dict": {"ctx": torch.randn(5, 4, width)}}, tmp_path / "csc.pth")
    with pytest.raises(ModelLoadError, match="class-specific"):
        load_context_file(tmp_path / "csc.pth")

    assert configured_contexts("tta-tiny:random", env=f"coop={reference}") == {"coop": reference}
    policy = ClipClassifier(models.policy.clip, contexts={"coop": reference})
    learner = policy.prompt_learner(LABELS, "learned:coop")
    torch.testing.assert_close(learner.ctx.detach(), ctx)
    # The learned vectors take the place of the phrase's: same prompt layout, other features.
    phrase = policy.prompt_learner(LABELS, "a photo of a")
    assert learner.parts.suffix.shape == phrase.parts.suffix.shape
    assert not torch.allclose(learner(), phrase())
    with pytest.raises(InvalidOptionsError, match="no learned context 'other'"):
        policy.prompt_learner(LABELS, "learned:other")
    wrong = ClipClassifier(models.policy.clip, contexts={"coop": torch.randn(4, width + 1)})
    with pytest.raises(InvalidOptionsError, match="width"):
        wrong.prompt_learner(LABELS, "learned:coop")


def test_the_bundled_world_policy_has_its_coop_context():
    assert "coop" in configured_contexts("world-policy", env="")
    assert load_context_file(configured_contexts("world-policy", env="")["coop"]).shape[0] == 4


def test_augmix_views_are_seeded_shaped_and_differ_from_plain_crops():
    image = make_image(3)
    spec = AugMixSpec()
    plain = make_views(image, 16, 48, seed=5)
    mixed = make_views(image, 16, 48, seed=5, mix=spec)
    assert mixed.shape == (16, 3, 48, 48) and float(mixed.min()) >= 0.0 and float(mixed.max()) <= 1.0
    torch.testing.assert_close(make_views(image, 16, 48, seed=5, mix=spec), mixed, rtol=0, atol=0)
    torch.testing.assert_close(mixed[0], plain[0], rtol=0, atol=0)  # the clean view is kept
    assert float((mixed[1:] - plain[1:]).abs().mean()) > 1e-3
    assert not torch.equal(make_views(image, 16, 48, seed=6, mix=spec), mixed)


def test_augmix_blend_is_the_reference_convex_combination(monkeypatch):
    """m * crop + (1 - m) * sum_i w_i chain_i(crop), m ~ Beta(1, 1), w ~ Dirichlet(1): with
    every operation replaced by "black out", the chains are 0 and the view is m * crop."""
    from adapters import augmix as module

    monkeypatch.setattr(module, "OPERATIONS", (lambda x, _: torch.zeros_like(x),) * 9)
    crops = torch.rand(5, 3, 8, 8)
    spec = AugMixSpec(chains=3, depth=3)
    out = augmix(crops, np.random.default_rng(4), spec)
    rng = np.random.default_rng(4)  # replay the draws in the documented order
    rng.integers(1, 4, size=15), rng.integers(0, 9, size=(3, 15)), rng.uniform(0.1, 1, size=(3, 15))
    rng.random((3, 15)), rng.dirichlet([1.0] * 3, size=5)
    blend = torch.from_numpy(rng.beta(1.0, 1.0, size=5)).float().view(5, 1, 1, 1)
    torch.testing.assert_close(out, blend * crops)
    monkeypatch.setattr(module, "OPERATIONS", (lambda x, _: x,) * 9)  # identity chains
    torch.testing.assert_close(augmix(crops, np.random.default_rng(4), spec), crops)


def test_reward_ensemble_is_the_weighted_sum_of_clamped_member_rewards(models):
    second = load_models("tta-tiny-reward:random", device="cpu").policy  # another tiny CLIP
    a, b = RewardModel(models.policy), RewardModel(second)
    views = make_views(make_image(1), 6, 64, seed=0)
    ensemble = RewardEnsemble([(a, 0.56), (b, 0.17)], "x*0.56+y*0.17")
    expected = 0.56 * a.reward_matrix(views, LABELS) + 0.17 * b.reward_matrix(views, LABELS)
    torch.testing.assert_close(RewardContext(ensemble, views, LABELS).matrix, expected)
    # Each member clamps on its own: 2.5 max(cos, 0).
    cos = a.encode_views(views) @ a.class_features(LABELS).t()
    torch.testing.assert_close(a.reward_matrix(views, LABELS), 2.5 * cos.clamp(min=0))


def test_reward_spec_syntax():
    assert parse_reward_spec("ViT-L-14-336:openai*0.56+RN50x64:openai*0.17+ViT-L-14:openai*0.28") == [
        ("ViT-L-14-336:openai", 0.56), ("RN50x64:openai", 0.17), ("ViT-L-14:openai", 0.28)]
    assert parse_reward_spec("world-reward") == [("world-reward", 1.0)]
    for bad in ("a*0.5+", "a*x", "*0.5", "a*0+b*1"):
        with pytest.raises(ValueError):
            parse_reward_spec(bad)


def test_load_models_builds_an_ensemble_from_two_tiny_reward_models():
    models = load_models("tta-tiny:random", "tta-tiny-reward:random*0.7+tta-tiny:random*0.3",
                         device="cpu")
    assert isinstance(models.reward, RewardEnsemble)
    assert [w for _, w in models.reward.members] == [0.7, 0.3]
    result = Engine(models).classify("rlcf", make_image(2), LABELS, options={"steps": 1, "n_views": 8})
    assert result.metrics["reward_before"] >= 0.0


def test_zero_vote_by_hand():
    # Kept views, most confident first: argmaxes 2, 0, 2, 0, 1 -> classes 0 and 2 tie at 2 votes;
    # the most confident view voted 2, so 2 wins.
    logits = torch.tensor([[0, 0, 9.], [5, 0, 0], [0, 1, 3], [2, 1, 0], [0, 4, 1]])
    winner, share = zero_vote(logits)
    assert winner == 2
    torch.testing.assert_close(share, torch.tensor([0.4, 0.2, 0.4]))
    assert zero_vote(logits[1:])[0] == 0  # without the first view, class 0 leads the tie


def test_zero_method_predicts_the_vote_of_the_confident_views(engine, image):
    result = engine.classify("zero", image, LABELS, options={"n_views": 32, "selection": 0.25})
    assert result.metrics["views_kept"] == 8
    assert result.score == pytest.approx(result.metrics["votes"] / 8, abs=1e-6)


def test_tda_cache_keeps_the_lowest_entropy_entries_and_scores_by_affinity():
    table: dict[int, list[Entry]] = {}
    for loss in (0.9, 0.5, 0.7, 0.2):
        add_entry(table, 1, Entry(torch.tensor([1.0, 0.0]), loss), capacity=3)
    assert [e.loss for e in table[1]] == [0.2, 0.5, 0.7]
    logits = cache_logits(torch.tensor([1.0, 0.0]), table, alpha=2.0, beta=5.0, n_classes=3)
    torch.testing.assert_close(logits, torch.tensor([0.0, 6.0, 0.0]))  # 3 x 2 exp(0)
    cache = TDACache(positive=table, negative={0: [Entry(torch.tensor([0.0, 1.0]), 0.4,
                                                      torch.tensor([0.5, 0.02, 0.48]))]}, images=4)
    back = TDACache.from_bytes(cache.to_bytes())
    assert back.images == 4 and [e.loss for e in back.positive[1]] == pytest.approx([0.2, 0.5, 0.7])
    negative = cache_logits(torch.tensor([0.0, 1.0]), back.negative, 1.0, 1.0, 3, (0.03, 1.0))
    torch.testing.assert_close(negative, torch.tensor([1.0, 0.0, 1.0]), atol=2e-3, rtol=0)


def test_tda_accumulates_per_scope_and_restarts_empty_elsewhere(models, image):
    engine = Engine(models)
    first = engine.classify("tda", image, LABELS, options={"views": "crops"},
                            context=RunContext(state_key="alice|a"))
    second = engine.classify("tda", make_image(5), LABELS, options={"views": "crops"},
                             context=RunContext(state_key="alice|a"))
    other = engine.classify("tda", image, LABELS, options={"views": "crops"},
                            context=RunContext(state_key="alice|b"))
    assert [r.metrics["cache_images"] for r in (first, second, other)] == [1, 2, 1]
    assert first.metrics["cache_positive"] == 1
