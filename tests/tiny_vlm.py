"""A tiny random-weight vision-language model (LLaVA architecture: CLIP vision tower + Llama
text model) with its processor and chat template, built from configs and saved to a directory,
so the in-process MLLM backend is tested on the real transformers loading path with no download.
Its answers are meaningless; its shapes, templates and token handling are real. (The bundled
world MLLM is a trained, larger member of the same family, built by the same code.)"""

from __future__ import annotations

from pathlib import Path

from world.mllm_build import VLMSize, build_vlm, save_vlm


def build_tiny_vlm(directory: Path, extra_words: list[str]) -> Path:
    model, processor = build_vlm(VLMSize(), extra_words, seed=0)
    return save_vlm(model, processor, directory)
