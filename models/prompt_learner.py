"""CoOp-style learnable context vectors for any open_clip CLIP text tower.

The prompt for class c is ``[SOT] ctx_1 .. ctx_n <tokens of c> . [EOT]``, where the n context
vectors start as the token embeddings of a phrase ("a photo of a") and are the only trainable
tensor. Everything else (prefix, class-name suffix, pooling positions) is frozen and cached per
label set, so a request only pays for the transformer passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from contract.errors import InvalidOptionsError
from models.length_buckets import LengthBucket, length_buckets
from models.text import TextTower


@dataclass(frozen=True)
class PromptParts:
    """The frozen pieces of the prompts for one label set (truncated to the used context)."""

    prefix: torch.Tensor
    """[C, 1, W] embedding of the start token."""
    suffix: torch.Tensor
    """[C, L - 1 - n_ctx, W] class-name tokens, full stop, EOT (and padding up to L)."""
    pool_index: torch.Tensor
    """[C] position the feature is pooled from."""
    ctx_init: torch.Tensor
    """[n_ctx, W] initial context vectors."""
    buckets: tuple[LengthBucket, ...]
    """The prompts grouped by length, each group run only as long as it needs."""


@torch.no_grad()
def build_prompt_parts(tower: TextTower, labels: Sequence[str], init_phrase: str) -> PromptParts:
    phrase = init_phrase.strip()
    phrase_tokens = tower.tokenize([phrase])[0]
    n_ctx = int(tower.pool_index(phrase_tokens[None])[0].item()) - 1  # tokens between SOT and EOT
    if n_ctx < 1:
        raise InvalidOptionsError(f"ctx_init {init_phrase!r} has no tokens", field="options.ctx_init")
    prompts = [f"{phrase} {label}." for label in labels]
    tokens = tower.tokenize(prompts)
    tower.check_fits(tokens, prompts)
    # CLIP's BPE splits on whitespace first, so the phrase tokenises the same inside each prompt.
    if not torch.equal(tokens[:, 1 : 1 + n_ctx], phrase_tokens[1 : 1 + n_ctx].expand(len(labels), -1)):
        raise InvalidOptionsError(
            f"ctx_init {init_phrase!r} does not tokenise as a prefix of the prompts",
            field="options.ctx_init",
        )
    tokens = tokens[:, : tower.used_length(tokens)]
    embedded = tower.embed(tokens).float()
    pool_index = tower.pool_index(tokens)
    buckets = (length_buckets(pool_index + 1) if tower.can_truncate
               else (LengthBucket(torch.arange(len(labels), device=tokens.device), tokens.shape[1]),))
    return PromptParts(
        prefix=embedded[:, :1].clone(),
        suffix=embedded[:, 1 + n_ctx :].clone(),
        pool_index=pool_index,
        ctx_init=embedded[0, 1 : 1 + n_ctx].clone(),
        buckets=buckets,
    )


class PromptLearner(nn.Module):
    """Owns the trainable context; a fresh instance per request is the episodic reset."""

    def __init__(self, tower: TextTower, parts: PromptParts) -> None:
        super().__init__()
        self.tower = tower
        self.parts = parts
        self.ctx = nn.Parameter(parts.ctx_init.clone())

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[0])

    def forward(self) -> torch.Tensor:
        """Normalised class text features [C, D] under the current context."""
        return self.encode_contexts(self.ctx.unsqueeze(0))[0]

    def encode_contexts(self, ctx: torch.Tensor) -> torch.Tensor:
        """Class text features [B, C, D] for B contexts [B, n_ctx, W]: one text-tower pass per
        length group over B x (its classes) prompts; how several images' episodes are tuned
        together."""
        parts = self.parts
        batch, n_ctx, width = ctx.shape
        groups, order = [], []
        for bucket in parts.buckets:
            index, size = bucket.classes, len(bucket.classes)
            embeddings = torch.cat([
                parts.prefix[index].unsqueeze(0).expand(batch, -1, -1, -1),
                ctx.unsqueeze(1).expand(-1, size, -1, -1),
                parts.suffix[index, : bucket.length - 1 - n_ctx].unsqueeze(0).expand(batch, -1, -1, -1),
            ], dim=2).reshape(batch * size, bucket.length, width)
            features = self.tower.encode_embeddings(embeddings, parts.pool_index[index].repeat(batch))
            groups.append(features.view(batch, size, -1))
            order.append(index)
        if len(groups) == 1:  # every class, in order
            return groups[0]
        return torch.cat(groups, dim=1)[:, torch.argsort(torch.cat(order))]
