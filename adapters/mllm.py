"""The ``mllm`` method: MLLM label rectification by denoising in-context learning (DICL).

Zero-shot CLIP gives the candidates; a multimodal LLM, shown an exemplar of a confusable class
(answered False) and an exemplar of the candidate (answered True), judges the test image. The
transition matrix is estimated from the label set's exemplars with the policy CLIP and cached
per label-set version and model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from adapters.base import Method, Stopwatch, ranked, zeroshot_guess
from adapters.dicl import Exemplars, confused_pairs, rectify, transition_matrix
from adapters.types import AdaptationResult, Hooks, MethodInput, Models, Progress, ScoredLabel
from adapters.views import clean_view
from contract.errors import InvalidInputError, MissingMLLMError
from contract.method_options import MLLMOptions
from models.text_cache import LRUCache


def exemplar_key(inp: MethodInput) -> str:
    if inp.label_set_version:
        return inp.label_set_version
    digest = hashlib.sha256("\n".join(inp.labels).encode())
    for index in sorted(inp.exemplars or {}):
        for image in (inp.exemplars or {})[index]:
            digest.update(image.tobytes())
    return digest.hexdigest()[:16]


class MLLMRectify(Method):
    name = "mllm"

    def __init__(self) -> None:
        self.transitions = LRUCache(max_entries=8)
        """[C, C] each: 16 MB at 2,000 classes."""

    def transition(self, models: Models, version: str, labels: tuple[str, ...],
                   templates: tuple[str, ...], exemplars: Exemplars,
                   between_classes: Callable[[], None] | None = None) -> torch.Tensor:
        """T for this label-set version and policy model, computed once (outside the cache's
        lock: ``between_classes`` may serve other requests, which may need another T)."""
        key = ("transition", models.policy.name, version, labels, templates)
        matrix = self.transitions.get(key)
        if matrix is None:
            matrix = transition_matrix(models.policy, exemplars, labels, templates, between_classes)
            self.transitions.put(key, matrix)
        return matrix

    def confusions(self, models: Models, version: str, labels: tuple[str, ...],
                   templates: tuple[str, ...], exemplars: Exemplars,
                   between_classes: Callable[[], None] | None = None) -> list[dict[str, object]]:
        return confused_pairs(self.transition(models, version, labels, templates, exemplars,
                                              between_classes), labels)

    @staticmethod
    def _exemplars(inp: MethodInput) -> Exemplars:
        exemplars = inp.exemplars or {}
        missing = [inp.labels[i] for i in range(len(inp.labels)) if not exemplars.get(i)]
        if missing:
            raise InvalidInputError(
                f"the mllm method needs exemplar images for every class of the label set; none for "
                f"{', '.join(repr(m) for m in missing[:5])}{' ...' if len(missing) > 5 else ''}",
                field="label_set")
        return exemplars

    def run(self, inp: MethodInput, models: Models, options: MLLMOptions, hooks: Hooks) -> AdaptationResult:
        if models.mllm is None:
            raise MissingMLLMError("the mllm method needs an MLLM (set TTA_MLLM)", field="method")
        exemplars = self._exemplars(inp)
        watch = Stopwatch()
        clip = models.policy.clip
        with torch.no_grad():
            features = clip.encode_images(clean_view(inp.image, clip.image_size)[None])
        probs, zeroshot_top = zeroshot_guess(models, inp, features, hooks)
        matrix = self.transition(models, exemplar_key(inp), inp.labels, inp.templates, exemplars)
        total = min(options.n_candidates, len(inp.labels))
        steps = {"n": 0}

        def on_scored(candidate: int, p_true: float, stage: str) -> None:
            steps["n"] += 1
            hooks.on_progress(Progress(
                step=steps["n"], total_steps=total, loss=None, metric=stage, value=round(p_true, 6),
                top_k=zeroshot_top,
                detail={"candidate": inp.labels[candidate], "p_true": round(p_true, 6)}))

        decision = rectify(probs, inp.image, matrix, exemplars, inp.labels, models.mllm,
                           n_candidates=options.n_candidates, draws=options.draws,
                           threshold=options.threshold, rng=np.random.default_rng(inp.seed),
                           on_scored=on_scored, shots=options.shots,
                           negative_shot=options.negative_shot)
        if decision.gate_passed:
            top = ranked(probs, inp.labels, inp.top_k)
        else:
            order = sorted(decision.candidates, key=lambda c: -decision.p_true[c])
            top = [ScoredLabel(inp.labels[c], round(decision.p_true[c], 6)) for c in order][: inp.top_k]
        candidates = [{"label": inp.labels[c], "clip_prob": round(float(probs[c]), 6),
                       "p_true": round(decision.p_true[c], 6) if c in decision.p_true else None}
                      for c in decision.candidates]
        metrics = {"steps": len(decision.p_true), "mllm_calls": decision.calls,
                   "gate_score": round(decision.gate_score, 6), "gate_passed": decision.gate_passed,
                   "threshold": options.threshold, "candidates": candidates, "mllm": models.mllm.name,
                   "compute_ms": watch.ms()}
        label = inp.labels[decision.label]
        return AdaptationResult(label=label, score=top[0].score, top_k=top, zeroshot_top_k=zeroshot_top,
                                changed=label != zeroshot_top[0].label, metrics=metrics)
