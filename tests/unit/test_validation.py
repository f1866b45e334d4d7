"""Bad input gets a precise error naming the field and what is allowed."""

import io

import pytest
from PIL import Image

from adapters.engine import Engine
from adapters.types import Models
from contract.errors import (
    ImageTooLargeError,
    InvalidImageError,
    InvalidLabelsError,
    InvalidOptionsError,
    MissingRewardModelError,
    ModelLoadError,
    UnknownMethodError,
    UnknownModelError,
    UnsupportedImageFormatError,
)
from contract.images import decode_image
from contract.labels import MAX_LABELS, validate_labels
from contract.names import parse_model_name
from contract.request import normalize
from models.loading import load_clip
from tests.conftest import LABELS


@pytest.mark.parametrize(("labels", "message"), [
    (["cat"], "at least 2"),
    (["cat", ""], "#2 is empty"),
    (["cat", "Cat "], "duplicate"),
    (["cat", "x" * 101], "#2 is 101 characters"),
    (["cat", "d\x00g"], r"U\+0000, a control character"),
    (["cat", "d\x7fg"], r"U\+007F, a control character"),
    (["cat", "d\x85g"], r"U\+0085, a control character"),
    (["cat", "cat\u200b"], r"U\+200B, an invisible formatting character"),
    (["cat", "\u202egod"], r"U\+202E, an invisible formatting character"),
    (["cat", "d\ud800g"], r"U\+D800, a lone surrogate"),
    (["Cat", "ｃａｔ"], "duplicate label"),
    (["cat", 7], "#2 is not a string"),
    ([f"c{i}" for i in range(MAX_LABELS + 1)], "too many labels"),
])
def test_bad_labels(labels, message):
    with pytest.raises(InvalidLabelsError, match=message) as info:
        validate_labels(labels)
    assert info.value.field == "labels"


@pytest.mark.parametrize(("method", "options", "field", "message"), [
    ("tpt", {"stepz": 2}, "options.stepz",
     "allowed: n_views, selection, views, augmix_severity, augmix_chains, augmix_depth, preset, steps"),
    ("tpt", {"steps": "2"}, "options.steps", "must be int"),
    ("tpt", {"steps": True}, "options.steps", "must be int"),
    ("tpt", {"steps": 0}, "options", "between 1 and 64"),
    ("rlcf-tune", {"params": "some"}, "options.params", "one of 'norm', 'all'"),
    ("rlcf", {"lr": -1.0}, "options", "'lr' must be between"),
])
def test_bad_options(method, options, field, message):
    with pytest.raises(InvalidOptionsError, match=message) as info:
        normalize(method, LABELS, options=options)
    assert info.value.field == field


def test_int_is_accepted_for_float_options():
    request = normalize("tpt", LABELS, options={"lr": 1})
    assert request.options.lr == 1.0 and isinstance(request.options.lr, float)


def test_unknown_method_lists_allowed():
    with pytest.raises(UnknownMethodError, match="allowed: zeroshot, zero, tda, tpt, rlcf, rlcf-tune"):
        normalize("ttt", LABELS)


def test_reward_method_without_reward_model(models, image):
    engine = Engine(Models(policy=models.policy, reward=None))
    with pytest.raises(MissingRewardModelError, match="available without one: zeroshot, zero, tda, tpt"):
        engine.classify("rlcf", image, LABELS)


def test_bad_top_k_and_templates():
    with pytest.raises(InvalidOptionsError, match="top_k"):
        normalize("zeroshot", LABELS, top_k=0)
    with pytest.raises(InvalidOptionsError, match="single, imagenet80") as info:
        normalize("zeroshot", LABELS, templates="fancy")
    assert info.value.field == "templates"
    assert normalize("zeroshot", LABELS, top_k=50).top_k == len(LABELS)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_image_decoding_rejects_hostile_input(image):
    jpeg = _encode(image, "JPEG")
    assert decode_image(jpeg).size == image.size
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        decode_image(jpeg[: len(jpeg) // 2])
    with pytest.raises(InvalidImageError, match="not a readable image"):
        decode_image(b"GIF89a-not-really")
    with pytest.raises(UnsupportedImageFormatError, match="GIF is not allowed"):
        decode_image(_encode(image, "GIF"))
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"")
    # A PNG bomb: 30000 x 30000 of zeros compresses to a few hundred KB.
    bomb = _encode(Image.new("L", (30_000, 30_000)), "PNG")
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        decode_image(bomb)
    # Under Pillow's own bomb threshold but over ours.
    big = _encode(Image.new("L", (7_000, 6_000)), "PNG")
    with pytest.raises(ImageTooLargeError, match="7000x6000 pixels; at most 40000000"):
        decode_image(big)


def test_model_name_syntax():
    assert parse_model_name("ViT-B-16:openai").kind == "pretrained"
    assert parse_model_name("ViT-B-16:/m/x.safetensors").kind == "checkpoint"
    assert parse_model_name("ViT-B-16:weights.pt").kind == "checkpoint"
    assert parse_model_name("ViT-B-16:random").kind == "random"
    assert parse_model_name("hf-hub:org/repo").kind == "schema"
    assert parse_model_name("mine", frozenset({"mine"})).kind == "bundled"
    with pytest.raises(ValueError):
        parse_model_name("ViT-B-16")


@pytest.mark.parametrize(("name", "error", "message"), [
    ("nonsense", UnknownModelError, "ARCH:TAG"),
    ("NoSuchArch:random", UnknownModelError, "no open_clip architecture named 'NoSuchArch'"),
    ("tta-tiny:openai", UnknownModelError, "has no pretrained tag 'openai'"),
    ("tta-tiny:/nowhere/x.safetensors", ModelLoadError, "checkpoint file not found"),
])
def test_unknown_models(name, error, message):
    with pytest.raises(error, match=message):
        load_clip(name, "cpu")
