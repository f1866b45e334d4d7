"""The in-process MLLM backend on a tiny random-weight LLaVA built in the test (no download):
the interleaved three-image prompt is built from the model's own chat template, run and scored."""

from __future__ import annotations

import pytest

from models.mllm.loading import load_scorer
from models.mllm.prompts import DICLPrompt, MLLMError, Shot
from models.mllm.transformers_backend import TransformersScorer
from tests.conftest import LABELS, make_image
from tests.tiny_vlm import build_tiny_vlm


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> TransformersScorer:
    words = sorted({w for label in LABELS for w in label.split()})
    directory = build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"), words)
    loaded = load_scorer(f"transformers:{directory}", device="cpu", batch_size=2)
    assert isinstance(loaded, TransformersScorer)
    return loaded


def prompt(query_label: str, seed: int) -> DICLPrompt:
    return DICLPrompt((Shot(make_image(seed), "black cat", False),
                       Shot(make_image(seed + 1), query_label, True),
                       Shot(make_image(seed + 2, (80, 60)), query_label, None)))


def test_prompt_interleaves_three_images_with_answered_turns(scorer):
    text = scorer._texts([prompt("red ball", 0)])[0]
    assert text.count("<image>") == 3
    assert text.index("assistant : False") < text.index("assistant : True") < text.rindex("<image>")
    assert text.endswith("assistant : ")  # the model answers the third question
    batch = scorer.processor(text=[text], images=[[s.image for s in prompt("red ball", 0).shots]],
                             return_tensors="pt")
    assert batch["pixel_values"].shape[0] == 3


def test_p_true_is_a_probability_and_batching_does_not_change_it(scorer):
    prompts = [prompt(label, 10 * i) for i, label in enumerate(LABELS)]  # different lengths: padding
    together = scorer.p_true(prompts)  # batch_size 2: three forward passes, padded rows
    alone = [scorer.p_true([p])[0] for p in prompts]
    assert all(0.0 < p < 1.0 for p in together)
    assert together == pytest.approx(alone, abs=1e-5)
    assert len(set(round(p, 6) for p in together)) > 1  # the answer depends on the prompt


def test_answer_tokens_and_bad_specs(scorer, tmp_path):
    assert scorer.true_ids != scorer.false_ids
    assert load_scorer("none") is None and load_scorer(None) is None
    with pytest.raises(MLLMError, match="TTA_MLLM"):
        load_scorer("magic:thing")
    with pytest.raises(MLLMError, match="could not load MLLM"):
        load_scorer(f"transformers:{tmp_path / 'missing'}", device="cpu")
