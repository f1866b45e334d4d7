"""Prompts grouped by length give the features and gradients of one full-context pass."""

import torch
import torch.nn.functional as F

from models.length_buckets import CALL_COST_TOKENS, length_buckets
from models.prompt_learner import PromptLearner

# Label lengths from one token to about twenty: several groups are worth their calls.
LONG_LABELS = [f"{'very ' * (i % 17)}thing {i}" for i in range(200)]


def test_groups_cover_every_class_once_and_cut_the_tokens():
    lengths = torch.tensor([9] * 700 + [10] * 150 + [12] * 100 + [18] * 50)
    buckets = length_buckets(lengths)
    covered = torch.sort(torch.cat([b.classes for b in buckets])).values
    assert torch.equal(covered, torch.arange(len(lengths)))
    for bucket in buckets:
        assert int(lengths[bucket.classes].max()) == bucket.length
    tokens = sum(len(b.classes) * b.length for b in buckets)
    assert len(buckets) > 1 and tokens < 0.6 * len(lengths) * 18


def test_small_label_sets_stay_one_call():
    lengths = torch.tensor([7, 8, 9, 12])
    (bucket,) = length_buckets(lengths)  # splitting would save fewer tokens than a call costs
    assert bucket.length == 12 and len(bucket.classes) == 4
    assert CALL_COST_TOKENS > 4 * 12 - (3 * 9 + 12)


def test_grouped_features_and_gradients_equal_the_full_context(models):
    policy = models.policy
    learner = policy.prompt_learner(LONG_LABELS, "a photo of a")
    assert len(learner.parts.buckets) > 1
    tokens = policy.tower.tokenize([f"a photo of a {label}." for label in LONG_LABELS])
    full = F.normalize(policy.clip.model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(learner().detach(), full, rtol=0, atol=1e-5)

    ctx = torch.randn(3, learner.n_ctx, learner.ctx.shape[1], requires_grad=True)
    target = torch.randn(3, len(LONG_LABELS), full.shape[1])
    (learner.encode_contexts(ctx) * target).sum().backward()
    grouped_grad = ctx.grad.clone()
    # The same prompts as one group at the longest length:
    parts = learner.parts
    one = PromptLearner(learner.tower, type(parts)(
        parts.prefix, parts.suffix, parts.pool_index, parts.ctx_init,
        length_buckets(parts.pool_index + 1, max_buckets=1)))
    ctx.grad = None
    (one.encode_contexts(ctx) * target).sum().backward()
    torch.testing.assert_close(grouped_grad, ctx.grad, rtol=1e-4, atol=1e-6)
