"""The playground's bundled data is what its generator says: samples re-render to the same pixels,
the demo is still one that zero-shot gets wrong and rlcf right, the presets match their sources."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from service.api.playground import STATIC_DIR
from world.glyphs import CLASS_NAMES
from world.playground_assets import SIZE, measure
from world.render import SHIFTED_DOMAINS, TEST_DOMAINS, render

MANIFEST = json.loads((STATIC_DIR / "samples" / "manifest.json").read_text())


def test_every_sample_file_is_the_scene_its_manifest_names():
    samples = MANIFEST["samples"]
    assert samples[0]["id"] == "demo" and len(samples) == 1 + 4 * len(TEST_DOMAINS)
    for sample in samples:
        path = STATIC_DIR / sample["url"].removeprefix("/static/")
        stored = np.asarray(Image.open(path).convert("RGB"))
        scene = render(sample["domain"], CLASS_NAMES.index(sample["truth"]), sample["seed"], SIZE)
        assert np.array_equal(stored, np.asarray(scene.image.convert("RGB"))), sample["id"]


def test_demo_is_fixed_by_rlcf_with_the_bundled_models():
    from adapters.engine import Engine, load_models

    engine = Engine(load_models("world-policy", "world-reward", device="cpu"))
    demo = MANIFEST["samples"][0]
    assert demo["domain"] in SHIFTED_DOMAINS
    measured = measure(engine, demo["domain"], CLASS_NAMES.index(demo["truth"]), demo["seed"])
    assert measured["zeroshot"] != demo["truth"]
    assert measured["rlcf"] == demo["truth"]
    assert {k: demo[k] for k in measured} == measured


def test_presets_match_their_sources():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    world = json.loads((STATIC_DIR / "presets" / "world-25.json").read_text())
    imagenet = json.loads((STATIC_DIR / "presets" / "imagenet-1k.json").read_text())
    assert world["labels"] == list(CLASS_NAMES) and len(world["labels"]) == 25
    names = imagenet["labels"]
    assert len(names) == len(set(names)) == 1000  # the API refuses duplicates
    pairs = enumerate(zip(names, IMAGENET_CLASSNAMES, strict=True))
    differ = {i: (ours, theirs) for i, (ours, theirs) in pairs if ours != theirs}
    assert differ == {744: ("projectile", "missile"), 837: ("dark glasses", "sunglasses")}
