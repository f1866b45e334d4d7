"""The three ways to name a model that work offline: random, checkpoint, bundled."""

import torch
from safetensors.torch import save_file

from models import bundled
from models.loading import load_clip


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_init_is_seeded_and_frozen():
    a, b = load_clip("tta-tiny:random", "cpu"), load_clip("tta-tiny:random", "cpu")
    assert _same_weights(a.model, b.model)
    assert not any(p.requires_grad for p in a.model.parameters())
    assert not a.model.training
    assert a.image_size == 32 and a.precision == "fp32"


def test_checkpoint_and_bundled_models_load_the_saved_weights(tmp_path):
    source = load_clip("tta-tiny:random", "cpu")
    with torch.no_grad():
        for p in source.model.parameters():
            p.add_(0.01)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))

    from_file = load_clip(f"tta-tiny:{path}", "cpu")
    assert _same_weights(source.model, from_file.model)

    bundled.register_bundled(bundled.BundledModel(
        name="test-bundled-tiny", arch="tta-tiny", checkpoint=path, description="test only"))
    try:
        from_bundle = load_clip("test-bundled-tiny", "cpu")
        assert _same_weights(source.model, from_bundle.model)
        assert from_bundle.name == "test-bundled-tiny"
    finally:
        bundled._BUNDLED.pop("test-bundled-tiny")
