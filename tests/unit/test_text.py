import pytest
import torch
import torch.nn.functional as F

from contract.errors import InvalidLabelsError
from contract.templates import SINGLE_TEMPLATE
from models.templates import resolve_templates
from tests.conftest import LABELS


def test_truncated_text_features_equal_full_context(models):
    policy = models.policy
    prompts = [SINGLE_TEMPLATE.format(label) for label in LABELS]
    tokens = policy.clip.tokenizer(prompts)
    assert policy.tower.used_length(tokens) < tokens.shape[1]
    full = F.normalize(policy.clip.model.encode_text(tokens), dim=-1)
    truncated = policy.tower.encode_texts(prompts)
    torch.testing.assert_close(truncated, full, rtol=0, atol=1e-5)


def test_prompt_learner_starts_at_the_single_template_classifier(models):
    policy = models.policy
    learner = policy.prompt_learner(LABELS, "a photo of a")
    assert learner.n_ctx == 4
    with torch.no_grad():
        learned = learner()
    torch.testing.assert_close(learned, policy.class_features(LABELS, (SINGLE_TEMPLATE,)),
                               rtol=0, atol=1e-5)


def test_class_features_are_cached_per_labels_and_templates(models):
    policy = models.policy
    first = policy.class_features(LABELS, resolve_templates("imagenet80"))
    hits = policy.cache.hits
    again = policy.class_features(LABELS, resolve_templates("imagenet80"))
    assert again is first and policy.cache.hits == hits + 1
    other = policy.class_features(LABELS[:3], resolve_templates("imagenet80"))
    assert other.shape[0] == 3
    assert torch.allclose(first.norm(dim=-1), torch.ones(len(LABELS)))


def test_prompt_that_overflows_the_context_is_refused(models):
    long_label = " ".join(["word"] * 80)
    with pytest.raises(InvalidLabelsError, match="too long"):
        models.policy.class_features(("cat", long_label), (SINGLE_TEMPLATE,))


def test_lru_cache_is_bounded():
    from models.text_cache import LRUCache

    cache = LRUCache(max_entries=2)
    for key in "abc":
        cache.get_or_compute(key, lambda k=key: k.upper())
    assert len(cache) == 2
    calls = []
    cache.get_or_compute("a", lambda: calls.append(1) or "A")
    assert calls == [1]  # "a" was evicted and recomputed
