"""CoOp for the world policy: 4 context vectors learned 16-shot on the ``train`` stream.

    python -m world.train --which coop        # writes models/weights/world-policy.coop.safetensors

As CoOp (Zhou et al., 2022) with its published ImageNet recipe scaled to the world: generic
context (one for all classes, class name at the end), initialised from "a photo of a", SGD
lr 0.002 with cosine decay, batch 32, 50 epochs, random-resized-crop + flip augmentation,
cross-entropy over the 25 classes. Both encoders stay frozen, so each image's augmented crops
are encoded once up front and every step only runs the text tower. Seeded; prints its CPU time
and the validation accuracy (validation seeds, never the benchmark's) with and without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from adapters.views import clean_view
from models.bundled import WEIGHTS_DIR
from models.classifier import ClipClassifier
from models.learned_context import save_context
from models.loading import load_clip
from world.augment import random_resized_crops
from world.data import TRAIN_SEEDS, VALIDATION_SEEDS, sample_arrays
from world.glyphs import CLASS_NAMES
from world.render import TEST_DOMAINS

SHOTS = 16
EPOCHS = 50
BATCH = 32
LR = 0.002
CROPS_PER_IMAGE = 16
"""Augmented crops encoded per training image (an epoch draws one of them per image)."""
INIT = "a photo of a"
CROP_SCALE_MIN = 0.5


@torch.no_grad()
def _accuracy(classifier: ClipClassifier, text: torch.Tensor, domain: str, n_per_class: int) -> float:
    images, labels, _ = sample_arrays(domain, n_per_class, seed_base=VALIDATION_SEEDS)
    size = classifier.clip.image_size
    views = torch.stack([clean_view(Image.fromarray(image), size) for image in images])
    predictions = classifier.logits(classifier.clip.encode_images(views), text).argmax(-1)
    return float((predictions.numpy() == labels).mean())


def train_coop(*, seed: int = 0, out: Path | None = None, model: str = "world-policy",
               epochs: int = EPOCHS, lr: float = LR) -> Path:
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    classifier = ClipClassifier(load_clip(model, "cpu"))
    images, labels, _ = sample_arrays("train", SHOTS, seed_base=TRAIN_SEEDS)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    with torch.no_grad():
        features = torch.stack([
            classifier.clip.encode_images(
                random_resized_crops(pixels, classifier.clip.image_size, rng, CROP_SCALE_MIN))
            for _ in range(CROPS_PER_IMAGE)])  # [crops, N, D]
    targets = torch.from_numpy(labels)
    learner = classifier.prompt_learner(CLASS_NAMES, INIT)
    initial_text = learner().detach()
    optimizer = torch.optim.SGD([learner.ctx], lr=lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = int(np.ceil(len(labels) / BATCH))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    for epoch in range(epochs):
        order = rng.permutation(len(labels))
        crop = rng.integers(0, CROPS_PER_IMAGE, size=len(labels))
        total = 0.0
        for start in range(0, len(order), BATCH):
            index = torch.from_numpy(order[start : start + BATCH])
            batch = features[torch.from_numpy(crop[index.numpy()]), index]
            loss = F.cross_entropy(classifier.logits(batch, learner()), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        if epoch % 10 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}/{epochs}  loss {total / len(labels):.3f}", flush=True)

    out = out or WEIGHTS_DIR / f"{model}.coop.safetensors"
    save_context(out, learner.ctx, init=INIT, shots=str(SHOTS), epochs=str(epochs), seed=str(seed),
                 lr=str(lr))
    print(f"saved {out} ({learner.n_ctx} context vectors) after "
          f"{time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu_started:.0f} s CPU")
    learned_text = learner().detach()
    for domain in TEST_DOMAINS:
        before = _accuracy(classifier, initial_text, domain, 8)
        after = _accuracy(classifier, learned_text, domain, 8)
        print(f"validation accuracy {domain:<11} '{INIT}' {before:.3f}  coop {after:.3f}")
    return out
