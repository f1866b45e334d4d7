"""One name syntax for every way of getting a CLIP (torch-free, so it can be validated anywhere).

    NAME                 a bundled model shipped with this project (``tta models`` lists them)
    ARCH:TAG             an open_clip architecture with a pretrained tag, e.g. ``ViT-B-16:openai``
                         (downloaded by open_clip; needs the internet or a warm cache)
    ARCH:PATH            an architecture with a local checkpoint file, e.g.
                         ``ViT-B-16:/models/b16.safetensors`` (PATH contains '/' or ends in
                         .pt/.pth/.bin/.safetensors)
    ARCH:random          random weights (seeded): for tests and speed benchmarks only
    hf-hub:ORG/REPO      an open_clip model on the Hugging Face hub
    local-dir:PATH       a directory with open_clip_config.json and weights
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SpecKind = Literal["bundled", "pretrained", "checkpoint", "random", "schema"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
SCHEMAS = ("hf-hub:", "local-dir:")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name."""

    name: str
    """The name as the user wrote it (the cache key)."""
    kind: SpecKind
    arch: str
    """open_clip architecture (or the whole schema name for ``kind == "schema"``)."""
    source: str | None = None
    """Pretrained tag or checkpoint path."""


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(CHECKPOINT_SUFFIXES)


def parse_model_name(name: str, bundled: frozenset[str] = frozenset()) -> ModelSpec:
    """Parse without touching the disk or the network; existence is checked when loading."""
    name = name.strip()
    if not name:
        raise ValueError("model name is empty")
    if name in bundled:
        return ModelSpec(name=name, kind="bundled", arch=name)
    if name.startswith(SCHEMAS):
        return ModelSpec(name=name, kind="schema", arch=name)
    arch, sep, source = name.partition(":")
    if not sep or not arch or not source:
        raise ValueError(
            f"model name {name!r} is neither a bundled model nor ARCH:TAG, ARCH:PATH, "
            "ARCH:random, hf-hub:ORG/REPO or local-dir:PATH"
        )
    if source == "random":
        return ModelSpec(name=name, kind="random", arch=arch)
    if _looks_like_path(source):
        return ModelSpec(name=name, kind="checkpoint", arch=arch, source=source)
    return ModelSpec(name=name, kind="pretrained", arch=arch, source=source)
