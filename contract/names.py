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

Any of these may end in ``@VERSION``: a fine-tuned version of that model kept in the model store
(``models.store``, ``TTA_MODEL_STORE``), e.g. ``world-policy@ft-20261129-3f2a1b``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

SpecKind = Literal["bundled", "pretrained", "checkpoint", "random", "schema"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
SCHEMAS = ("hf-hub:", "local-dir:")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    version: str | None = None
    """A fine-tuned version in the model store (the part after '@'); None: the base weights."""

    @property
    def base(self) -> str:
        """The name without its version."""
        return self.name.rpartition("@")[0] if self.version else self.name


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(CHECKPOINT_SUFFIXES)


def split_version(name: str) -> tuple[str, str | None]:
    """("base", "version") for "base@version"; ("name", None) without a version. An '@' inside
    a path (before its last '/') is part of the path, not a version."""
    base, sep, version = name.rpartition("@")
    if not sep or "/" in version or "\\" in version:
        return name, None
    if not base or not VERSION_PATTERN.match(version):
        raise ValueError(f"model version {version!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return base, version


def parse_model_name(name: str, bundled: frozenset[str] = frozenset()) -> ModelSpec:
    """Parse without touching the disk or the network; existence is checked when loading."""
    name = name.strip()
    if not name:
        raise ValueError("model name is empty")
    base, version = split_version(name)
    if version is not None:
        return replace(parse_model_name(base, bundled), name=name, version=version)
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
