"""Seeded samples of the world: disjoint seed ranges keep training, validation and the
benchmark's test samples apart by construction."""

from __future__ import annotations

import numpy as np
from PIL import Image

from world.glyphs import CLASS_NAMES
from world.render import render

TRAIN_SEEDS = 0
"""Training scenes: domain "train", seeds from 0."""
VALIDATION_SEEDS = 500_000
"""For development decisions (training length, model size); never the benchmark's seeds."""
TEST_SEEDS = 1_000_000
"""The accuracy benchmark's samples."""

CAPTION_TEMPLATES = (
    ("{caption}.", 0.2),
    ("a photo of a {name}.", 0.4),
    ("a {color} {name}.", 0.2),
    ("a {size} {color} {name}.", 0.1),
    ("a photo of a {name} on a {background} background.", 0.1),
)
"""(template, probability). Short class-only captions dominate: colour and background are the
easy cues in a batch, and a tiny CLIP trained on full captions alone learns those, not shape."""
_WEIGHTS = np.array([weight for _, weight in CAPTION_TEMPLATES])


def sample_arrays(
    domain: str, n_per_class: int, *, seed_base: int, size: int = 64,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 [N, size, size, 3], labels [N], captions) with classes interleaved."""
    images, labels, captions = [], [], []
    for index in range(n_per_class):
        for label in range(len(CLASS_NAMES)):
            scene = render(domain, label, seed_base + index, size)
            images.append(np.asarray(scene.image, dtype=np.uint8))
            labels.append(label)
            captions.append(scene.caption)
    return np.stack(images), np.asarray(labels), captions


def caption_variant(caption: str, label: int, rng: np.random.Generator) -> str:
    """A random rewording of a scene caption, so that short prompts ("a photo of a kettle.")
    are as familiar to the text tower as full descriptions."""
    words = caption.removeprefix("a photo of a ").split(" on a ")
    size, color = words[0].split(" ")[:2]
    background = words[1].removesuffix(" background")
    template = CAPTION_TEMPLATES[int(rng.choice(len(CAPTION_TEMPLATES), p=_WEIGHTS))][0]
    return template.format(caption=caption, name=CLASS_NAMES[label], color=color, size=size,
                           background=background)


EXEMPLARS_PER_CLASS = 3
EXEMPLAR_SEEDS = 300_000
"""``train``-domain seeds for the bench's label set: past the MLLM's training scenes (< 1000),
below validation (500,000) and test (1,000,000)."""


def exemplar_bank() -> dict[int, list[Image.Image]]:
    """The labelled exemplars a DICL label set of the world holds (the accuracy bench's, and
    the bundled label set world-25's): ``EXEMPLARS_PER_CLASS`` train scenes per class."""
    images, labels, _ = sample_arrays("train", EXEMPLARS_PER_CLASS, seed_base=EXEMPLAR_SEEDS)
    exemplars: dict[int, list[Image.Image]] = {index: [] for index in range(len(CLASS_NAMES))}
    for pixels, label in zip(images, labels, strict=True):
        exemplars[int(label)].append(Image.fromarray(pixels))
    return exemplars
