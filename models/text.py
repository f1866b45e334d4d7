"""The CLIP text tower driven from token embeddings, with context truncation.

CLIP's text transformer is causal and pools at the end-of-text token, so positions after the
longest prompt's EOT never influence the pooled feature: running only ``max_eot + 1`` positions
instead of 77 gives the same features for a fraction of the cost. The prompt learner needs the
same entry point (embeddings in, features out), so both go through ``TextTower``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contract.errors import InvalidLabelsError, ModelLoadError
from models.loading import LoadedClip

TEXT_BATCH = 256


class TextTower:
    """Uniform access to the text encoder of open_clip's ``CLIP`` and ``CustomTextCLIP``
    (with the built-in ``TextTransformer``). Hugging Face text towers are not supported."""

    def __init__(self, clip: LoadedClip) -> None:
        model = clip.model
        # Any: open_clip builds these attributes dynamically; we check for them just below.
        source: Any = model.text if hasattr(model, "text") else model
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if not all(hasattr(source, attr) for attr in needed):
            raise ModelLoadError(
                f"model {clip.name!r} has a text tower this service cannot drive from embeddings "
                "(Hugging Face text towers are not supported)", field="model",
            )
        if getattr(source, "cls_emb", None) is not None:
            raise ModelLoadError(f"model {clip.name!r} (CoCa-style text tower) is not supported",
                                 field="model")
        self.clip = clip
        self.source: Any = source
        self.pool_type = getattr(source, "text_pool_type", getattr(source, "pool_type", "argmax"))
        mask = getattr(source, "attn_mask", None)
        self.attn_mask: torch.Tensor | None = mask
        # Truncation is exact only for a causal mask with EOT pooling.
        self.can_truncate = mask is not None and self.pool_type in ("argmax", "eos")
        self.eos_id = getattr(source, "text_eos_id", getattr(source, "eos_id", None))
        self.context_length = int(source.positional_embedding.shape[0])

    @property
    def width(self) -> int:
        return int(self.source.token_embedding.weight.shape[1])

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.clip.tokenizer(list(texts)).to(self.clip.device)

    def pool_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position of the token each prompt's feature is read from."""
        if self.pool_type == "argmax":
            return tokens.argmax(dim=-1)
        if self.pool_type == "eos" and self.eos_id is not None:
            return (tokens == self.eos_id).int().argmax(dim=-1)
        if self.pool_type == "first":
            return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        return torch.full((tokens.shape[0],), tokens.shape[1] - 1, device=tokens.device)

    def check_fits(self, tokens: torch.Tensor, texts: Sequence[str], reserve: int = 0) -> None:
        """Prompts cut at the context length lose their EOT and silently change meaning."""
        eot = self.pool_index(tokens)
        limit = self.context_length - 1 - reserve
        for text, position in zip(texts, eot.tolist(), strict=True):
            if self.pool_type in ("argmax", "eos") and position >= limit:
                raise InvalidLabelsError(
                    f"prompt {text!r} is too long for the text encoder "
                    f"({self.context_length} tokens)", field="labels",
                )

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.source.token_embedding(tokens)

    def used_length(self, tokens: torch.Tensor) -> int:
        if not self.can_truncate:
            return int(tokens.shape[1])
        return int(self.pool_index(tokens).max().item()) + 1

    def encode_embeddings(self, x: torch.Tensor, pool_index: torch.Tensor) -> torch.Tensor:
        """[B, L, W] token embeddings (L <= context) -> normalised features [B, D]."""
        src = self.source
        length = x.shape[1]
        cast = src.transformer.get_cast_dtype()
        x = x.to(cast) + src.positional_embedding[:length].to(cast)
        mask = self.attn_mask[:length, :length] if self.attn_mask is not None else None
        with self.clip.autocast():
            x = src.transformer(x, attn_mask=mask)
            x = src.ln_final(x)
            pooled = x[torch.arange(x.shape[0], device=x.device), pool_index]
            proj = src.text_projection
            if proj is not None:
                pooled = proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
        return F.normalize(pooled.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised features of plain prompts, truncated and batched."""
        tokens = self.tokenize(texts)
        self.check_fits(tokens, texts)
        out = []
        for start in range(0, tokens.shape[0], TEXT_BATCH):
            batch = tokens[start : start + TEXT_BATCH]
            batch = batch[:, : self.used_length(batch)]
            out.append(self.encode_embeddings(self.embed(batch), self.pool_index(batch)))
        return torch.cat(out)


def class_text_features(
    tower: TextTower, labels: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """Zero-shot classifier weights: per class, the mean of normalised template features,
    renormalised. [C, D]."""
    prompts = [template.format(label) for label in labels for template in templates]
    feats = tower.encode_texts(prompts).view(len(labels), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1)
