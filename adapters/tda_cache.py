"""TDA's positive and negative caches (Karmanov et al., CVPR 2024), as pure functions.

Positive cache: per pseudo-label, up to ``pos_shots`` test features with the lowest entropy;
its logits are alpha * exp(-beta (1 - cos)) @ one-hot(label). Negative cache: images of
middling normalised entropy, per pseudo-label up to ``neg_shots``, valued by a mask of the
classes whose probability lies in (mask_low, mask_high); its logits are subtracted.
An entry replaces the worst (highest-entropy) one of a full class only if it is better,
and each class stays sorted by entropy, as in the reference.

A cache serialises to bytes (safetensors, fp16 features) so any worker can read it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch
from safetensors.torch import load, save


@dataclass
class Entry:
    feature: torch.Tensor
    """[D] (the mean feature of the kept views, not renormalised, as the reference)."""
    loss: float
    """Entropy of the image's prediction: the ranking key."""
    probs: torch.Tensor | None = None
    """[C] class probabilities (negative cache only)."""


@dataclass
class TDACache:
    positive: dict[int, list[Entry]] = field(default_factory=dict)
    negative: dict[int, list[Entry]] = field(default_factory=dict)
    images: int = 0
    """Images whose update was applied (a redelivered job does not count twice)."""

    def to_bytes(self) -> bytes:
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, list[list[float]]] = {}
        for kind, table in (("pos", self.positive), ("neg", self.negative)):
            rows = [(label, e) for label in sorted(table) for e in table[label]]
            meta[kind] = [[label, e.loss] for label, e in rows]
            if rows:
                tensors[f"{kind}.features"] = torch.stack([e.feature for _, e in rows]).half()
                if kind == "neg":
                    tensors["neg.probs"] = torch.stack([e.probs for _, e in rows  # type: ignore[misc]
                                                        ]).half()
        header = {"meta": json.dumps(meta), "images": str(self.images)}
        return save(tensors, metadata=header) if tensors else json.dumps(
            {"meta": meta, "images": self.images}).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> TDACache:
        cache = cls()
        if not data:
            return cache
        if data[:1] == b"{":
            header = json.loads(data)
            cache.images = int(header["images"])
            return cache
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len])["__metadata__"]
        meta = json.loads(metadata["meta"])
        cache.images = int(metadata["images"])
        for kind, table in (("pos", cache.positive), ("neg", cache.negative)):
            for row, (label, loss) in enumerate(meta[kind]):
                probs = tensors["neg.probs"][row].float() if kind == "neg" else None
                table.setdefault(int(label), []).append(
                    Entry(tensors[f"{kind}.features"][row].float(), float(loss), probs))
        return cache


def add_entry(table: dict[int, list[Entry]], label: int, entry: Entry, capacity: int) -> None:
    if capacity <= 0:
        return
    entries = table.setdefault(label, [])
    if len(entries) < capacity:
        entries.append(entry)
    elif entry.loss < entries[-1].loss:
        entries[-1] = entry
    entries.sort(key=lambda e: e.loss)


def normalised_entropy(loss: float, n_classes: int) -> float:
    """The reference divides the entropy (in nats) by log2(C): a quirk kept for its thresholds."""
    return loss / math.log2(n_classes) if n_classes > 1 else 0.0


def cache_logits(feature: torch.Tensor, table: dict[int, list[Entry]], alpha: float, beta: float,
                 n_classes: int, mask: tuple[float, float] | None = None) -> torch.Tensor:
    """[C] logits a cache adds (positive) or that are subtracted (negative, with ``mask``)."""
    rows = [(label, e) for label in sorted(table) for e in table[label]]
    if not rows:
        return torch.zeros(n_classes)
    keys = torch.stack([e.feature for _, e in rows]).float()  # [N, D]
    if mask is None:
        values = torch.nn.functional.one_hot(
            torch.tensor([label for label, _ in rows]), n_classes).float()
    else:
        probs = torch.stack([e.probs for _, e in rows]).float()  # type: ignore[misc]
        values = ((probs > mask[0]) & (probs < mask[1])).float()
    affinity = keys @ feature.float()  # [N]
    return alpha * (torch.exp(-(beta - beta * affinity)) @ values)
