"""The learning-rate schedule the world's models train with (the CLIPs and the MLLM)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5% of ``total`` steps, then cosine decay to zero."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))
