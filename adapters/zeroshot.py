"""Zero-shot CLIP: the clean view against template-ensembled class features."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.base import Method, Stopwatch, build_result, zeroshot_guess
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from adapters.views import clean_view


@dataclass(frozen=True)
class ZeroShotOptions:
    """Zero-shot has no options: templates and top_k are request fields."""


class ZeroShot(Method):
    name = "zeroshot"
    description = "Zero-shot CLIP on the clean view (prompt-template ensemble); no tuning."
    options_type = ZeroShotOptions

    def run(
        self, inp: MethodInput, models: Models, options: ZeroShotOptions, hooks: Hooks
    ) -> AdaptationResult:
        watch = Stopwatch()
        clip = models.policy.clip
        with torch.no_grad():
            features = clip.encode_images(clean_view(inp.image, clip.image_size)[None])
        probs, top = zeroshot_guess(models, inp, features, hooks)
        return build_result(probs, top, inp, {"steps": 0, "views": 1, "compute_ms": watch.ms()})
