"""Train the world MLLM (``python -m world.train --which mllm``): a small LLaVA, on ``train``
scenes only, seeded, on the CPU.

Its eyes are the bundled world *reward* CLIP's image tower, frozen (``models/mllm/
open_clip_vision.py``): LLaVA puts a CLIP's image encoder in front of its language model, so a
real MLLM sees at least as well as the CLIP it is built on, and Machine Vision Therapy's premise
is an MLLM more robust than the classifier it corrects. (An earlier world MLLM distilled a LeViT
from the reward CLIP in 600 steps; it classified 11% of clean validation scenes and 8% of sketch.)

Training: with the vision tower frozen, its tokens are cached for a bank of ``train`` scenes
(clean and augmented views) and the projector and the Llama learn to answer the DICL
conversations of ``world/mllm_data.py`` (loss on the True/False answer of the last question).
Twelve of the 25 names are its long tail (``MLLMRecipe.unknown_names``): never tied to their
images, so only exemplars in context tell them apart, which is why DICL shows exemplars.

Writes ``models/weights/world-mllm/`` (fp16 safetensors, config, processor, chat template) and
prints answer accuracy on *validation* seeds (never the benchmark's test seeds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.loading import load_clip
from world.augment import broad_photometric, random_resized_crops
from world.data import TRAIN_SEEDS, VALIDATION_SEEDS, sample_arrays
from world.glyphs import CLASS_NAMES
from world.mllm_build import REWARD_VISION, VLMSize, build_vlm, save_vlm
from world.mllm_data import ConversationSampler
from world.schedule import warmup_cosine

NAME_WORDS = sorted({word for name in CLASS_NAMES for word in name.split()})


WORLD_MLLM_SIZE = VLMSize(image_size=64, vision=REWARD_VISION, text_hidden=128, text_layers=4,
                          text_heads=4)
"""Four Llama layers: with two, the True/False answer stayed at chance (loss ln 2) for 1500
steps under every loss weighting tried, although the model named the classes it saw; with four
it starts comparing the asked name with the image within a few hundred steps."""


@dataclass(frozen=True)
class MLLMRecipe:
    size: VLMSize = WORLD_MLLM_SIZE
    bank_per_class: int = 80
    text_steps: int = 2500
    text_batch: int = 32
    text_lr: float = 1e-3
    shuffle_names: float = 0.6
    """Share of conversations with exemplars whose class names are permuted, so only the
    exemplars tell the answer (0.6 chosen on validation before the long tail below, when the
    model knew every name: exemplars added 1.4 points over none; 0.3: 0.8)."""
    unknown_names: tuple[str, ...] = ("kettle", "cup", "tree", "car", "fish", "moon", "umbrella",
                                      "bell", "boat", "cross", "lightning bolt", "pencil")
    """The long tail: 12 of the 25 names (drawn once, ``default_rng(0)``) the language model never
    sees tied to their images (``world/mllm_data.py``); it learns them only from exemplars in
    context, as a real MLLM meets fine-grained labels it does not know."""
    naming_weight: float = 0.3
    """Weight of the captioning term (name the class after "a photo of a")."""
    align_weight: float = 1.0
    """Weight of the image-token-as-name term: it puts an image's token near its class name's
    embedding, which the True/False comparison builds on (0.5 learned no comparison)."""

    @property
    def unknown_classes(self) -> frozenset[int]:
        """The long tail as class indices into ``CLASS_NAMES``."""
        return frozenset(CLASS_NAMES.index(name) for name in self.unknown_names)


def _pixels(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def _normalise(views: torch.Tensor, processor: Any, size: int) -> torch.Tensor:
    """[B,3,H,W] in [0,1] -> the vision tower's input (the processor's resolution and statistics)."""
    views = F.interpolate(views, size=(size, size), mode="bicubic", align_corners=False,
                          antialias=True).clamp_(0.0, 1.0)
    mean = torch.tensor(processor.image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(1, 3, 1, 1)
    return (views - mean) / std


def patch_tokens(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """What the LLaVA feeds its projector: the chosen layer's tokens (CLS dropped by "default")."""
    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states
    tokens = hidden[model.config.vision_feature_layer]
    return tokens[:, 1:] if model.config.vision_feature_select_strategy == "default" else tokens


@torch.no_grad()
def take_reward_vision(model: Any) -> None:
    """Copy the world reward CLIP's image tower into the LLaVA's vision tower and freeze it."""
    reward = load_clip(REWARD_VISION, "cpu").model.visual.state_dict()  # type: ignore[union-attr]
    model.model.vision_tower.visual.load_state_dict(reward)
    model.model.vision_tower.eval().requires_grad_(False)


@torch.no_grad()
def feature_bank(model: Any, processor: Any, domain: str, per_class: int, seed_base: int,
                 rng: np.random.Generator, augmented: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Patch tokens of one view per scene (plus a broad-augmented view if ``augmented``)."""
    from PIL import Image

    images, labels, _ = sample_arrays(domain, per_class, seed_base=seed_base)
    clean = processor.image_processor([Image.fromarray(i) for i in images],
                                      return_tensors="pt")["pixel_values"]
    chunks = [patch_tokens(model, clean[s : s + 256]) for s in range(0, len(clean), 256)]
    if augmented:
        views = broad_photometric(random_resized_crops(_pixels(images), 64, rng, 0.6), rng, p=0.3)
        pixels = _normalise(views, processor, processor.image_processor.crop_size["height"])
        chunks += [patch_tokens(model, pixels[s : s + 256]) for s in range(0, len(pixels), 256)]
        labels = np.concatenate([labels, labels])
    return torch.cat(chunks), labels


def language_forward(model: Any, processor: Any, bank: torch.Tensor, conversations: list[Any],
                     image_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden [B, L, D], input ids, attention mask). The image tokens' embeddings are the
    projected cached patch tokens, exactly where LLaVA's forward would put them."""
    expanded = [c.text.replace("<image>", "<image>" * image_tokens) for c in conversations]
    batch = processor.tokenizer(expanded, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    embeds = model.get_input_embeddings()(ids)
    order = torch.tensor([i for c in conversations for i in c.images])
    features = model.model.multi_modal_projector(bank[order]).reshape(-1, embeds.shape[-1])
    embeds = embeds.masked_scatter((ids == model.config.image_token_index)[..., None], features)
    hidden = model.model.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    return hidden, ids, mask


def answer_logits(model: Any, processor: Any, bank: torch.Tensor, conversations: list[Any],
                  image_tokens: int) -> torch.Tensor:
    """[B, vocab] at each conversation's last position (where the answer comes)."""
    hidden, _, mask = language_forward(model, processor, bank, conversations, image_tokens)
    return model.lm_head(hidden[torch.arange(len(conversations)), mask.sum(dim=-1) - 1])


def naming_positions(ids: torch.Tensor, conversations: list[Any], vocab: dict[str, int],
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, positions, next tokens) for "... of a" -> class name in truthful questions: the
    captioning half of the objective (the model names what it sees), which gives the projector
    a direct signal long before the True/False answers leave chance."""
    after = (ids[:, :-1] == vocab["of"]) & (ids[:, 1:] == vocab["a"])
    rows, positions = [], []
    for row, conversation in enumerate(conversations):
        spots = (torch.nonzero(after[row]).flatten() + 1).tolist()
        for spot, truthful in zip(spots, conversation.truthful, strict=True):
            if truthful:
                rows.append(row)
                positions.append(spot)
    r, p = torch.tensor(rows, dtype=torch.long), torch.tensor(positions, dtype=torch.long)
    return r, p, ids[r, p + 1]


def _answer_ids(processor: Any) -> torch.Tensor:
    vocab = processor.tokenizer.get_vocab()
    return torch.tensor([vocab["False"], vocab["True"]])


@torch.no_grad()
def validate(model: Any, processor: Any, banks: dict[str, tuple[torch.Tensor, np.ndarray]],
             image_tokens: int, unknown: frozenset[int] = frozenset(), n: int = 240,
             ) -> dict[str, float]:
    """Answer accuracy on conversations over validation scenes (fixed seed, true names), per
    domain, and per domain on the conversations asking about a name the model does not know."""
    answers = _answer_ids(processor)
    scores = {}
    for domain, (bank, labels) in banks.items():
        sampler = ConversationSampler(processor, labels, CLASS_NAMES, np.random.default_rng(1),
                                      shuffle_names=0.0)
        conversations = [sampler.sample() for _ in range(n)]
        logits = answer_logits(model, processor, bank, conversations, image_tokens)[:, answers]
        right = logits.argmax(-1).bool() == torch.tensor([c.answer for c in conversations])
        scores[domain] = round(float(right.float().mean()), 3)
        rare = torch.tensor([c.candidate in unknown for c in conversations])
        if rare.any():
            scores[f"{domain} (unknown name)"] = round(float(right[rare].float().mean()), 3)
    return scores


def train_language(model: Any, processor: Any, recipe: MLLMRecipe, rng: np.random.Generator,
                   banks: dict[str, tuple[torch.Tensor, np.ndarray]]) -> None:
    image_tokens = recipe.size.image_tokens
    bank, labels = feature_bank(model, processor, "train", recipe.bank_per_class, TRAIN_SEEDS, rng,
                                augmented=True)
    unknown = recipe.unknown_classes
    sampler = ConversationSampler(processor, labels, CLASS_NAMES, rng, recipe.shuffle_names, unknown)
    known_images = torch.from_numpy(np.flatnonzero([int(label) not in unknown for label in labels]))
    check = sampler.sample()  # the expansion used here is the processor's own
    from PIL import Image

    real = processor(text=[check.text], images=[[Image.new("RGB", (32, 32))] * len(check.images)],
                     return_tensors="pt")["input_ids"][0]
    mine = processor.tokenizer([check.text.replace("<image>", "<image>" * image_tokens)],
                               return_tensors="pt")["input_ids"][0]
    assert torch.equal(real, mine), "token expansion differs from the processor's"
    answers = _answer_ids(processor)
    vocab = processor.tokenizer.get_vocab()
    name_ids = torch.tensor([vocab[name.split()[0]] for name in CLASS_NAMES])
    with torch.no_grad():
        # Layer 0 starts with key = query projections: every token attends to the tokens most
        # like itself (a name to the image of that class, a query image to the exemplar like
        # it), the comparison the answers need; from a random start the answer loss sat at
        # chance for hundreds of steps.
        attention = model.model.language_model.layers[0].self_attn
        attention.k_proj.weight.copy_(attention.q_proj.weight)
    params = [p for name, p in model.named_parameters() if "vision_tower" not in name]
    optimizer = torch.optim.AdamW(params, lr=recipe.text_lr, weight_decay=0.01)
    model.train()
    started = time.perf_counter()
    for step in range(recipe.text_steps):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, recipe.text_steps, recipe.text_lr)
        conversations = [sampler.sample() for _ in range(recipe.text_batch)]
        hidden, ids, mask = language_forward(model, processor, bank, conversations, image_tokens)
        logits = model.lm_head(hidden[torch.arange(len(conversations)), mask.sum(dim=-1) - 1])
        targets = answers[torch.tensor([int(c.answer) for c in conversations])]
        rows, positions, names = naming_positions(ids, conversations, vocab)
        naming = F.cross_entropy(model.lm_head(hidden[rows, positions]), names)
        # An image token, read as a word, is its class name: image and name embeddings share
        # directions, so layer 0's self-similar attention pairs a name with its image at once.
        pick = known_images[torch.from_numpy(rng.choice(len(known_images), 256, replace=False))]
        align = F.cross_entropy(model.lm_head(model.model.multi_modal_projector(bank[pick]).mean(1)),
                                name_ids[torch.from_numpy(labels[pick.numpy()])])
        loss = F.cross_entropy(logits, targets) + recipe.naming_weight * naming + recipe.align_weight * align
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0 or step == recipe.text_steps - 1:
            print(f"language {step:5d}/{recipe.text_steps}  loss {loss.item():.3f}  "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
        if step % 300 == 299 or step == recipe.text_steps - 1:
            model.eval()
            print(f"  validation answer accuracy {validate(model, processor, banks, image_tokens, unknown)}",
                  flush=True)
            model.train()
    model.eval()


def train_mllm(*, seed: int, out: Path, recipe: MLLMRecipe | None = None) -> Path:
    recipe = recipe or MLLMRecipe()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    model, processor = build_vlm(recipe.size, NAME_WORDS, seed=seed)
    take_reward_vision(model)
    banks = {domain: feature_bank(model, processor, domain, 8, VALIDATION_SEEDS, rng, augmented=False)
             for domain in ("clean", "sketch", "hard")}
    train_language(model, processor, recipe, rng, banks)
    model.requires_grad_(False)
    save_vlm(model.half(), processor, out)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"saved {out} ({size:.1f} MB) after {(time.perf_counter() - started) / 60:.1f} min wall, "
          f"{(time.process_time() - cpu_started) / 60:.1f} min CPU")
    return out
