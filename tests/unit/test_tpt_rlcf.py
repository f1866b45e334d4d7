"""The optimisation itself: entropy goes down (TPT), reward goes up (RLCF)."""

import itertools

import torch

from adapters.engine import Engine
from adapters.policy_gradient import reinforce_loss, top_k_actions
from adapters.selection import marginal_entropy
from adapters.types import Hooks
from adapters.views import make_views
from tests.conftest import LABELS, make_image, self_reward_models


def _collect(engine, method, image, options):
    progress = []
    result = engine.classify(method, image, LABELS, options=options,
                        hooks=Hooks(on_progress=progress.append))
    return result, progress


def test_tpt_marginal_entropy_goes_down_over_steps(engine, image):
    result, progress = _collect(engine, "tpt", image, {"steps": 4})
    losses = [p.value for p in progress]
    assert len(losses) == 4
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    assert result.metrics["entropy_after"] < result.metrics["entropy_before"]
    assert abs(losses[0] - result.metrics["entropy_before"]) < 1e-4


def test_policy_gradient_moves_probability_to_the_highest_reward_action(models):
    """One RLCF step on one view's real features: the rewarded action gains probability even
    when it is the policy's third choice. (With several views the shared prompt follows the
    class most views reward, so a single view is the clean statement.)"""
    policy = models.policy
    views = make_views(make_image(4), 6, policy.clip.image_size, seed=0)
    with torch.no_grad():
        features = policy.clip.encode_images(views)[2:3]
    learner = policy.prompt_learner(LABELS, "a photo of a")
    optimizer = torch.optim.AdamW([learner.ctx], lr=7e-3, weight_decay=5e-4)

    logits = policy.logits(features, learner())
    actions = top_k_actions(logits.detach(), 3)
    # Reward the policy's *third* choice in every view, a little for the others.
    rewards = torch.tensor([[0.2, 0.1, 0.9]]).expand(actions.shape[0], -1)
    target = actions[:, 2]
    before = logits.detach().softmax(-1).gather(1, target[:, None]).squeeze(1)
    loss = reinforce_loss(logits, actions, rewards)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = policy.logits(features, learner()).softmax(-1).gather(1, target[:, None]).squeeze(1)
    assert float(after) > float(before) + 0.01, (before, after)


def test_rlcf_raises_expected_reward(models, image):
    engine = Engine(self_reward_models(models))
    for method, options in (("rlcf", {"steps": 2}), ("rlcf-tune", {"steps": 2, "lr": 1e-3})):
        result, progress = _collect(engine, method, image, options)
        assert result.metrics["reward_before"] > 0.0, "test needs some positive reward"
        assert result.metrics["reward_after"] > result.metrics["reward_before"], (method, result)
        assert [p.step for p in progress] == [1, 2]
        assert abs(progress[0].value - result.metrics["reward_before"]) < 1e-5


def test_marginal_entropy_of_identical_views_is_the_view_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0]]).repeat(4, 1)
    p = logits[0].softmax(-1)
    expected = -(p * p.log()).sum()
    torch.testing.assert_close(marginal_entropy(logits), expected)


def test_reinforce_with_one_action_uses_the_raw_reward_as_the_reference():
    """K = 1: no baseline, loss = mean over views of -r * log pi(top-1 | view), by hand."""
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.3, 0.2, -0.4]], requires_grad=True)
    rewards = torch.tensor([[0.7], [0.25]])
    actions = top_k_actions(logits.detach(), 1)
    assert actions.tolist() == [[0], [1]]
    loss = reinforce_loss(logits, actions, rewards)
    by_hand = -(0.7 * torch.log_softmax(logits[0].detach(), -1)[0]
                + 0.25 * torch.log_softmax(logits[1].detach(), -1)[1]) / 2
    torch.testing.assert_close(loss.detach(), by_hand)
    loss.backward()
    assert torch.count_nonzero(logits.grad) == logits.numel()


def test_reinforce_with_k_actions_subtracts_the_per_view_mean():
    logits = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    rewards = torch.tensor([[0.9, 0.3, 0.0]])
    actions = torch.tensor([[0, 1, 2]])
    log_p = torch.log_softmax(logits.detach(), -1)[0]
    by_hand = -((0.9 - 0.4) * log_p[0] + (0.3 - 0.4) * log_p[1] + (0.0 - 0.4) * log_p[2]) / 3
    torch.testing.assert_close(reinforce_loss(logits, actions, rewards).detach(), by_hand)
