"""Run every served method once before taking jobs: fills the text-feature caches and pays
one-time costs (allocator, kernels) before the first user request, not during it."""

from __future__ import annotations

import logging
import time

import numpy as np
from PIL import Image

from adapters.engine import Engine
from contract.catalog import get_spec

log = logging.getLogger(__name__)

WARMUP_LABELS = ("a cat", "a dog")


def warm_up(engine: Engine, methods: list[str]) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for method in methods:
        if get_spec(method).needs_exemplars:
            continue  # needs a label set; the MLLM itself was loaded (and checked) at start-up
        if get_spec(method).calls_methods:
            continue  # (auto) it calls the other methods, warmed up on their own
        start = time.perf_counter()
        engine.classify(method, image, WARMUP_LABELS, top_k=1)
        log.info("warm-up %s: %.0f ms", method, (time.perf_counter() - start) * 1000)
