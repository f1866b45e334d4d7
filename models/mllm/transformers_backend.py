"""In-process MLLM scoring with Hugging Face transformers (``AutoModelForImageTextToText`` +
``AutoProcessor``, the model's own multi-image chat template): one forward pass per batch of
prompts, P(True) from the last position's logits over the True/False tokens. No generation."""

from __future__ import annotations

import logging
from typing import Any

import torch

from models.device import resolve_device
from models.mllm.prompts import DICLPrompt, MLLMError

log = logging.getLogger(__name__)

ANSWER_SPELLINGS = {True: ("True", " True"), False: ("False", " False")}
"""The answer's first token may or may not carry a leading space, depending on the template."""


def answer_token_ids(tokenizer: Any, answer: bool) -> list[int]:
    ids = set()
    for spelling in ANSWER_SPELLINGS[answer]:
        encoded = tokenizer.encode(spelling, add_special_tokens=False)
        if encoded:
            ids.add(int(encoded[0]))
    if not ids:
        raise MLLMError(f"the tokenizer has no token for {ANSWER_SPELLINGS[answer][0]!r}")
    return sorted(ids)


class TransformersScorer:
    def __init__(self, source: str, *, device: str | None = None, dtype: str = "auto",
                 batch_size: int = 16, name: str | None = None) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from models.mllm.open_clip_vision import register

        register()  # the bundled world MLLM sees through an open_clip tower
        self.name = name or f"transformers:{source}"
        """What results name it by (a bundled model by its name, not its path on this host)."""
        self.device = resolve_device(device)
        torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
        if self.device.type == "cpu" and dtype == "auto":
            torch_dtype = torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(source)
            model: Any = AutoModelForImageTextToText.from_pretrained(source, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise MLLMError(f"could not load MLLM {source!r}: {exc}") from exc
        self.model = model.to(self.device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Right padding keeps every real token at its own position (most models derive positions
        # from the sequence index, not the mask); the answer logits are read at each row's end.
        self.tokenizer.padding_side = "right"
        self.true_ids = answer_token_ids(self.tokenizer, True)
        self.false_ids = answer_token_ids(self.tokenizer, False)
        self.batch_size = batch_size
        log.info("loaded MLLM %s on %s", source, self.device)

    def _texts(self, prompts: list[DICLPrompt]) -> list[str]:
        return [self.processor.apply_chat_template(p.chat_messages(lambda _: {"type": "image"}),
                                                   add_generation_prompt=True, tokenize=False)
                for p in prompts]

    @torch.no_grad()
    def p_true(self, prompts: list[DICLPrompt]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            batch = self.processor(text=self._texts(chunk),
                                   images=[[shot.image for shot in p.shots] for p in chunk],
                                   return_tensors="pt", padding=True)
            # Pixels in the weights' dtype: the bundled model loads as fp16 on CUDA.
            batch = batch.to(device=self.device, dtype=self.model.dtype)
            last = batch["attention_mask"].sum(dim=-1) - 1
            logits = self.model(**batch).logits[torch.arange(len(chunk)), last].float()
            true = logits[:, self.true_ids].logsumexp(dim=-1)
            false = logits[:, self.false_ids].logsumexp(dim=-1)
            scores.extend(torch.stack([true, false], dim=-1).softmax(dim=-1)[:, 0].tolist())
        return scores
