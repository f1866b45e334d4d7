"""The world MLLM's training conversations keep its long tail unknown: a known class is always
asked by its own name, a long-tail class only by some long-tail name (permuted per conversation),
so the name of a long-tail class never tells its images apart."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.mllm.loading import BUNDLED_MLLMS
from world.glyphs import CLASS_NAMES
from world.mllm_data import ConversationSampler

QUESTION = re.compile(r"Is this a photo of a (.+?)\? Answer True or False\.")


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    from models.mllm.open_clip_vision import register

    register()
    return AutoProcessor.from_pretrained(BUNDLED_MLLMS["world-mllm"])


def test_long_tail_names_are_permuted_among_themselves_and_known_names_never(processor):
    unknown = frozenset(range(0, len(CLASS_NAMES), 2))
    labels = np.repeat(np.arange(len(CLASS_NAMES)), 4)
    sampler = ConversationSampler(processor, labels, CLASS_NAMES, np.random.default_rng(0),
                                  shuffle_names=0.0, unknown=unknown)
    tail_names = {CLASS_NAMES[c] for c in unknown}
    asked_for_tail: dict[int, set[str]] = {}
    for _ in range(400):
        conversation = sampler.sample()
        asked = QUESTION.findall(conversation.text)[-1]  # the query's question: the candidate
        if conversation.candidate in unknown:
            assert asked in tail_names
            asked_for_tail.setdefault(conversation.candidate, set()).add(asked)
        else:
            assert asked == CLASS_NAMES[conversation.candidate]
        shots = zip(conversation.images, conversation.truthful, strict=True)
        # the captioning loss never ties a long-tail class's images to a name
        assert not any(truthful and int(labels[image]) in unknown for image, truthful in shots)
    # each long-tail class was asked under several names, not its own only
    assert all(len(names) >= 3 for names in asked_for_tail.values()), asked_for_tail


def test_without_a_long_tail_every_class_is_asked_by_its_own_name(processor):
    labels = np.repeat(np.arange(len(CLASS_NAMES)), 4)
    sampler = ConversationSampler(processor, labels, CLASS_NAMES, np.random.default_rng(0),
                                  shuffle_names=0.0)
    for _ in range(100):
        conversation = sampler.sample()
        assert QUESTION.findall(conversation.text)[-1] == CLASS_NAMES[conversation.candidate]
