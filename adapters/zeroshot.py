"""Zero-shot CLIP: the clean view against template-ensembled class features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from adapters.base import Method, Stopwatch, build_result, zeroshot_guess
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from adapters.views import clean_view
from contract.method_options import ZeroShotOptions


class ZeroShot(Method):
    name = "zeroshot"

    def run(
        self, inp: MethodInput, models: Models, options: ZeroShotOptions, hooks: Hooks
    ) -> AdaptationResult:
        watch = Stopwatch()
        clip = models.policy.clip
        with torch.no_grad():
            features = clip.encode_images(clean_view(inp.image, clip.image_size)[None])
        probs, top = zeroshot_guess(models, inp, features, hooks)
        return build_result(probs, top, inp, {"steps": 0, "views": 1, "compute_ms": watch.ms()})

    def run_batch(
        self, inputs: Sequence[MethodInput], models: Models, options: Any, hooks: Sequence[Hooks]
    ) -> list[AdaptationResult]:
        """Several images (possibly of different label sets) in one image-encoder pass; each
        result's ``compute_ms`` is the whole batch's time, since each waited for all of it."""
        watch = Stopwatch()
        clip = models.policy.clip
        with torch.no_grad():
            views = torch.stack([clean_view(inp.image, clip.image_size) for inp in inputs])
            features = clip.encode_images(views)
        guesses = [zeroshot_guess(models, inp, features[i : i + 1], hook)
                   for i, (inp, hook) in enumerate(zip(inputs, hooks, strict=True))]
        elapsed = watch.ms()
        return [
            build_result(probs, top, inp, {"steps": 0, "views": 1, "batch_size": len(inputs),
                                           "compute_ms": elapsed})
            for (probs, top), inp in zip(guesses, inputs, strict=True)
        ]
