"""Builds a small LLaVA (a vision tower + Llama text model) with a word-level tokenizer and a
multi-image chat template, the family ``AutoModelForImageTextToText`` and ``AutoProcessor``
load from a directory. The world MLLM (``world/train_mllm.py``) is one, with the world reward
CLIP's image tower; the tests build a tiny random one (a Hugging Face CLIP ViT) with the same
code.

Why LLaVA: it is the simplest interleaved multi-image architecture in transformers (each
``<image>`` in the chat becomes that image's patch tokens, in order), every piece has a tiny
config, and it loads with the same two Auto classes a user's Qwen2.5-VL or SmolVLM does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.bundled import CONFIG_DIR, get_bundled

PROMPT_WORDS = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "user", "assistant", ":", "True", "False",
                "Is", "this", "a", "photo", "of", "?", "Answer", "or", "."]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}"
                 "{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant : {% endif %}")
"""Every turn is ``role : <image> question`` / ``assistant : answer``; the generation prompt
leaves ``assistant :`` open, so the next token is the answer."""


@dataclass(frozen=True)
class VLMSize:
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 2
    vision: str = "clip"
    """"clip": a small random CLIP ViT (the tests' tiny MLLM); "world-reward": the world reward
    CLIP's image tower (``models/mllm/open_clip_vision.py``, one token per image), as LLaVA
    puts a CLIP's image encoder in front of its language model."""

    @property
    def image_tokens(self) -> int:
        return 1 if self.vision == REWARD_VISION else (self.image_size // self.patch_size) ** 2


REWARD_VISION = "world-reward"


def vision_config(size: VLMSize) -> tuple[Any, int, str]:
    """(config, feature layer, select strategy)."""
    from transformers import CLIPVisionConfig

    if size.vision == REWARD_VISION:
        from models.mllm.open_clip_vision import OpenClipVisionConfig, register

        register()
        arch = json.loads((CONFIG_DIR / f"{get_bundled(REWARD_VISION).arch}.json").read_text())
        config: Any = OpenClipVisionConfig(vision_cfg=arch["vision_cfg"], embed_dim=arch["embed_dim"])
        return config, -1, "full"
    clip: Any = CLIPVisionConfig(
        image_size=size.image_size, patch_size=size.patch_size, hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden, num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads, projection_dim=size.vision_hidden)
    return clip, -1, "default"


def word_tokenizer(extra_words: list[str]) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(dict.fromkeys(PROMPT_WORDS + extra_words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>",
                                   extra_special_tokens={"image_token": "<image>"})


def build_vlm(size: VLMSize, extra_words: list[str], seed: int = 0) -> tuple[Any, Any]:
    """(LlavaForConditionalGeneration with random weights, LlavaProcessor)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = word_tokenizer(extra_words)
    vision, layer, strategy = vision_config(size)
    select: Any = strategy
    # The processor's token count per image: (side / patch)^2, plus 1 for a CLS that "default" drops.
    patch = size.image_size if size.vision == REWARD_VISION else size.patch_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size.image_size},
                                           crop_size={"height": size.image_size, "width": size.image_size}),
        tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy=strategy,
        chat_template=CHAT_TEMPLATE, num_additional_image_tokens=int(strategy == "default"))
    vocab = tokenizer.get_vocab()
    config = LlavaConfig(
        vision_config=vision,
        text_config=LlamaConfig(
            vocab_size=len(vocab), hidden_size=size.text_hidden, intermediate_size=2 * size.text_hidden,
            num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads,
            num_key_value_heads=size.text_heads, max_position_embeddings=1024, pad_token_id=0,
            bos_token_id=1, eos_token_id=2, tie_word_embeddings=True),
        image_token_index=vocab["<image>"], vision_feature_select_strategy=select,
        vision_feature_layer=layer)
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(config).eval(), processor


def save_vlm(model: Any, processor: Any, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
