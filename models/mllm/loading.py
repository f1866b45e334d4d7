"""``TTA_MLLM`` -> a scorer: ``none``, ``world-mllm`` (the bundled world MLLM),
``transformers:<hub id or dir>``, ``openai:<base URL>``."""

from __future__ import annotations

from models.bundled import WEIGHTS_DIR
from models.mllm.prompts import MLLMError, MLLMScorer

BUNDLED_MLLMS = {"world-mllm": WEIGHTS_DIR / "world-mllm"}
"""Named MLLMs shipped in the package: the same transformers path as a user's directory."""


def load_scorer(spec: str | None, *, model: str | None = None, api_key: str | None = None,
                device: str | None = None, timeout_s: float = 60.0, retries: int = 2,
                concurrency: int = 8, batch_size: int = 16) -> MLLMScorer | None:
    if not spec or spec.strip().lower() == "none":
        return None
    name = None
    if spec.strip() in BUNDLED_MLLMS:
        name, spec = spec.strip(), f"transformers:{BUNDLED_MLLMS[spec.strip()]}"
    kind, _, source = spec.partition(":")
    if kind == "transformers" and source:
        from models.mllm.transformers_backend import TransformersScorer

        return TransformersScorer(source, device=device, batch_size=batch_size, name=name)
    if kind == "openai" and source:
        from models.mllm.openai_backend import OpenAIChatScorer

        return OpenAIChatScorer(source, model or "", api_key=api_key, timeout_s=timeout_s,
                                retries=retries, concurrency=concurrency)
    raise MLLMError(f"TTA_MLLM={spec!r} is not 'none', 'world-mllm', 'transformers:<model id or directory>' "
                    "or 'openai:<base URL>'", field="TTA_MLLM")
