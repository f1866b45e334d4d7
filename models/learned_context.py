"""Learned prompt contexts (CoOp): context vectors trained few-shot, stored with a model.

A learned context replaces the token embeddings of the ``ctx_init`` phrase: the prompt for class
c becomes ``[SOT] ctx_1 .. ctx_n <tokens of c> . [EOT]`` with the stored vectors (n = 4 or 16).

Where they come from:
- next to a bundled model's checkpoint: ``models/weights/<model>.<name>.safetensors``
  (e.g. ``world-policy.coop.safetensors``, trained by ``python -m world.train --which coop``);
- ``TTA_LEARNED_CONTEXTS="coop=/path/to/model.pth.tar-50"`` (several joined by ``,``): a CoOp
  checkpoint as the reference publishes it (a torch checkpoint whose ``state_dict`` holds
  ``ctx`` or ``prompt_learner.ctx``, shape [n_ctx, width]) or a safetensors file with ``ctx``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from contract.errors import ModelLoadError
from models.bundled import WEIGHTS_DIR, bundled_names

ENV = "TTA_LEARNED_CONTEXTS"
CTX_KEYS = ("ctx", "prompt_learner.ctx")


def save_context(path: Path, ctx: torch.Tensor, **metadata: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"ctx": ctx.detach().float().contiguous().cpu()}, str(path), metadata=metadata or None)


def load_context_file(path: str | Path) -> torch.Tensor:
    """[n_ctx, width] from a safetensors file or a reference CoOp torch checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"learned context file not found: {path.name}", field="ctx_init")
    if path.suffix == ".safetensors":
        tensors = load_file(str(path))
    else:
        # weights_only: a checkpoint is data, never code (the reference saves plain tensors).
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        tensors = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else {}
    for key in CTX_KEYS:
        ctx = tensors.get(key)
        if isinstance(ctx, torch.Tensor):
            if ctx.ndim != 2:
                raise ModelLoadError(
                    f"{path.name}: {key} has shape {tuple(ctx.shape)}; only a generic context "
                    "[n_ctx, width] is supported (not class-specific CoOp)", field="ctx_init")
            return ctx.float()
    raise ModelLoadError(f"{path.name} holds no CoOp context ({' or '.join(CTX_KEYS)})", field="ctx_init")


def configured_contexts(model_name: str, env: str | None = None) -> dict[str, Path]:
    """Learned contexts available to ``model_name``: bundled sidecars, then the environment."""
    found: dict[str, Path] = {}
    if model_name in bundled_names():
        for path in sorted(WEIGHTS_DIR.glob(f"{model_name}.*.safetensors")):
            found[path.name[len(model_name) + 1 : -len(".safetensors")]] = path
    spec = os.environ.get(ENV, "") if env is None else env
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, location = entry.partition("=")
        if not sep or not name.strip() or not location.strip():
            raise ModelLoadError(f"{ENV} entry {entry!r} is not NAME=PATH", field="ctx_init")
        found[name.strip()] = Path(location.strip())
    return found
