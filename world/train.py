"""Train the world's two CLIPs on captioned ``train`` scenes (CPU, seeded).

    python -m world.train --which policy      # small policy CLIP
    python -m world.train --which reward      # larger reward CLIP, broader augmentation
    python -m world.train --which coop        # CoOp context for the policy (world/train_coop.py)
    python -m world.train --which mllm        # world MLLM (a small LLaVA; world/train_mllm.py)

Writes fp16 safetensors to ``models/weights/world-{which}.safetensors`` and prints zero-shot
accuracy per domain on *validation* seeds (never the benchmark's test seeds).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

from adapters.views import clean_view
from models.bundled import WEIGHTS_DIR
from models.loading import LoadedClip, load_clip
from models.text import TextTower
from world.augment import broad_photometric, random_resized_crops
from world.data import TRAIN_SEEDS, VALIDATION_SEEDS, caption_variant, sample_arrays
from world.glyphs import CLASS_NAMES
from world.render import TEST_DOMAINS
from world.schedule import warmup_cosine


@dataclass(frozen=True)
class Recipe:
    arch: str
    steps: int
    batch: int
    lr: float
    broad_augmentation: bool
    crop_scale_min: float
    n_per_class: int


RECIPES = {
    "policy": Recipe("tta-world-policy", steps=3000, batch=128, lr=1e-3, broad_augmentation=False,
                     crop_scale_min=0.6, n_per_class=1200),
    "reward": Recipe("tta-world-reward", steps=3000, batch=128, lr=1e-3, broad_augmentation=True,
                     crop_scale_min=0.35, n_per_class=1200),
}


def _to_pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def duplicate_aware_targets(texts: list[str]) -> torch.Tensor:
    """Soft targets: identical captions in a batch are all positives of each other (the
    short class-only captions repeat often; a plain diagonal would push them apart)."""
    ids = {text: i for i, text in enumerate(dict.fromkeys(texts))}
    keys = torch.tensor([ids[text] for text in texts])
    same = (keys[:, None] == keys[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def encode_texts_trainable(tower: TextTower, texts: list[str]) -> torch.Tensor:
    tokens = tower.tokenize(texts)
    tokens = tokens[:, : tower.used_length(tokens)]
    return tower.encode_embeddings(tower.embed(tokens), tower.pool_index(tokens))


@torch.no_grad()
def zero_shot_accuracy(clip: LoadedClip, domain: str, n_per_class: int, seed_base: int) -> float:
    images, labels, _ = sample_arrays(domain, n_per_class, seed_base=seed_base)
    tower = TextTower(clip)
    text = tower.encode_texts([f"a photo of a {name}." for name in CLASS_NAMES])


    views = torch.stack([clean_view(Image.fromarray(img), clip.image_size) for img in images])
    predictions = (clip.encode_images(views) @ text.t()).argmax(-1).numpy()
    return float((predictions == labels).mean())


def train(
    which: str, *, seed: int, out: Path, steps: int | None = None, batch: int | None = None,
    lr: float | None = None, eval_every: int = 0,
) -> Path:
    recipe = RECIPES[which]
    steps = steps or recipe.steps
    batch = batch or recipe.batch
    peak_lr = lr or recipe.lr
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    images, labels, captions = sample_arrays("train", recipe.n_per_class, seed_base=TRAIN_SEEDS)
    print(f"rendered {len(images)} training scenes in {time.perf_counter() - started:.0f}s")

    clip = load_clip(f"{recipe.arch}:random", "cpu")
    model: Any = clip.model
    model.train()
    model.requires_grad_(True)
    tower = TextTower(clip)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak_lr, betas=(0.9, 0.98), eps=1e-6,
    )
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, steps, peak_lr)
        index = rng.choice(len(images), batch, replace=False)
        views = random_resized_crops(_to_pixels(images[index]), clip.image_size, rng,
                                     recipe.crop_scale_min)
        if recipe.broad_augmentation:
            views = broad_photometric(views, rng)
        texts = [caption_variant(captions[i], int(labels[i]), rng) for i in index]
        targets = duplicate_aware_targets(texts)
        image_features = F.normalize(model.encode_image(clip.prepare(views)), dim=-1)
        text_features = encode_texts_trainable(tower, texts)
        logits = model.logit_scale.exp() * image_features @ text_features.t()
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 50 == 0 or step == steps - 1:
            elapsed = time.perf_counter() - started
            print(f"step {step:5d}/{steps}  loss {float(loss.detach()):.3f}  "
                  f"scale {float(model.logit_scale.detach().exp()):.1f}  {elapsed:.0f}s", flush=True)
        if eval_every and step % eval_every == eval_every - 1:
            model.eval()
            clean = zero_shot_accuracy(clip, "clean", 4, VALIDATION_SEEDS)
            model.train()
            print(f"  validation clean zero-shot accuracy {clean:.3f}", flush=True)

    model.eval()
    model.requires_grad_(False)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out))
    minutes = (time.perf_counter() - started) / 60
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB) after {minutes:.1f} min")
    for domain in TEST_DOMAINS:
        accuracy = zero_shot_accuracy(clip, domain, 8, VALIDATION_SEEDS)
        print(f"validation zero-shot accuracy {domain:<11} {accuracy:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--which", choices=[*sorted(RECIPES), "coop", "mllm"], required=True)
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--batch", type=int, default=None, help="override the recipe's batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's peak lr")
    parser.add_argument("--eval-every", type=int, default=0, help="validation accuracy every N steps")
    args = parser.parse_args()
    if args.which == "mllm":
        from world.train_mllm import train_mllm

        # One thread: on cores shared with other jobs, two threads spin-wait and ran 10x slower.
        torch.set_num_threads(1)
        train_mllm(seed=args.seed, out=args.out or WEIGHTS_DIR / "world-mllm")
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.which == "coop":
        from world.train_coop import train_coop

        train_coop(seed=args.seed, out=args.out, **({"lr": args.lr} if args.lr else {}))
        return
    out = args.out or WEIGHTS_DIR / f"world-{args.which}.safetensors"
    train(args.which, seed=args.seed, out=out, steps=args.steps, batch=args.batch, lr=args.lr,
          eval_every=args.eval_every)


if __name__ == "__main__":
    main()
