"""Choosing, snapshotting and restoring the encoder parameters a method tunes in place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.BatchNorm1d)


def tunable_parameters(encoder: nn.Module, which: str) -> dict[str, nn.Parameter]:
    """"norm": affine parameters of normalisation layers; "all": every parameter."""
    if which == "all":
        return dict(encoder.named_parameters())
    params: dict[str, nn.Parameter] = {}
    for module_name, module in encoder.named_modules():
        # open_clip's LayerNorm subclasses nn.LayerNorm; check by isinstance, not by name.
        if isinstance(module, NORM_TYPES):
            for param_name, param in module.named_parameters(recurse=False):
                params[f"{module_name}.{param_name}"] = param
    if not params:
        raise ValueError("the image encoder has no normalisation layers to tune")
    return params


def snapshot(params: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


@torch.no_grad()
def load_into(params: dict[str, nn.Parameter], values: dict[str, torch.Tensor]) -> None:
    for name, param in params.items():
        param.copy_(values[name])


@contextmanager
def tuning(params: dict[str, nn.Parameter]) -> Iterator[dict[str, torch.Tensor]]:
    """Enable gradients on ``params`` and, whatever happens, put back the exact original
    tensors (copied in place, so other references to the model see the restore), clear their
    gradients and freeze them again. Yields the snapshot of the original values."""
    original = snapshot(params)
    try:
        for param in params.values():
            param.requires_grad_(True)
        yield original
    finally:
        load_into(params, original)
        for param in params.values():
            param.grad = None
            param.requires_grad_(False)
