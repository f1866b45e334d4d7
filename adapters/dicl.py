"""Denoising in-context learning (Machine Vision Therapy): the MLLM checks the CLIP's label.

Pure pieces, so the decision logic is testable with a scripted scorer:
- the transition matrix T from a labelled exemplar bank (never from test requests):
  T[c] is the CLIP's mean probability vector over class c's exemplars;
- for a candidate c, the erroneous exemplar comes from the class most often taken for c
  (argmax over j of T[j, c], excluding c and the CLIP's top-1, whose "False" would be a lie);
  (the official code instead shows the candidate's own exemplar asked about the top-1:
  ``negative_shot="code"``); ``shots`` 1 drops the negative turn, 0 both exemplar turns;
- the gate: keep the CLIP's top-1 when (P(True | top-1) + its CLIP probability) / 2 >= threshold,
  else score all n candidates and take the one the MLLM believes most.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from adapters.views import clean_view
from models.classifier import ClipClassifier
from models.mllm.prompts import DICLPrompt, MLLMScorer, Shot

Exemplars = Mapping[int, Sequence[Image.Image]]


def transition_matrix(policy: ClipClassifier, exemplars: Exemplars, labels: Sequence[str],
                      templates: Sequence[str], between_classes: Callable[[], None] | None = None,
                      ) -> torch.Tensor:
    """[C, C]; rows of classes without exemplars are NaN. ``between_classes`` is called before
    each class's exemplars are encoded (a worker serves waiting requests there, so it is called
    outside the no-grad blocks: a TPT job run there must keep its gradients)."""
    n = len(labels)
    matrix = torch.full((n, n), float("nan"))
    with torch.no_grad():
        text = policy.class_features(labels, templates)
    for index, images in exemplars.items():
        if not images:
            continue
        if between_classes is not None:
            between_classes()
        with torch.no_grad():
            views = torch.stack([clean_view(image, policy.clip.image_size) for image in images])
            probs = policy.logits(policy.clip.encode_images(views), text).softmax(dim=-1)
            matrix[index] = probs.mean(dim=0).cpu()
    return matrix


def confused_pairs(matrix: torch.Tensor, labels: Sequence[str], top: int = 10) -> list[dict[str, object]]:
    """The largest off-diagonal entries: class ``true`` is taken for ``taken_for`` at ``rate``."""
    off = matrix.clone()
    off.fill_diagonal_(float("nan"))
    flat = torch.nan_to_num(off, nan=-1.0).flatten()
    order = flat.argsort(descending=True)[:top]
    n = len(labels)
    return [{"true": labels[int(i) // n], "taken_for": labels[int(i) % n], "rate": round(float(flat[i]), 4)}
            for i in order if flat[i] >= 0]


def confusable_class(matrix: torch.Tensor, candidate: int, top1: int, available: set[int]) -> int | None:
    """The class whose exemplars the CLIP most often takes for ``candidate``."""
    scores = torch.nan_to_num(matrix[:, candidate], nan=-1.0).clone()
    for index in range(len(scores)):
        if index in (candidate, top1) or index not in available:
            scores[index] = -2.0
    best = int(scores.argmax())
    return best if scores[best] > -2.0 else None


def negative_class(matrix: torch.Tensor, candidate: int, top1: int, second: int | None,
                   available: set[int], mode: str) -> int | None:
    """The class whose exemplar is shown and asked about the top-1 (answer False)."""
    if mode == "code":  # the official code: the candidate's own exemplar, or the runner-up's
        shown = candidate if candidate != top1 else second
        return shown if shown is not None and shown in available else None
    return confusable_class(matrix, candidate, top1, available)


def build_prompts(query: Image.Image, candidate: int, top1: int, matrix: torch.Tensor,
                  exemplars: Exemplars, labels: Sequence[str], draws: int,
                  rng: np.random.Generator, *, shots: int = 2, negative_shot: str = "paper",
                  second: int | None = None) -> list[DICLPrompt]:
    """``draws`` prompts for one candidate, each with other exemplars where the bank allows."""
    available = {i for i, images in exemplars.items() if images}
    wrong_class = (negative_class(matrix, candidate, top1, second, available, negative_shot)
                   if shots >= 2 else None)
    right = list(exemplars[candidate]) if shots >= 1 else []
    right_order = rng.permutation(len(right)) if right else np.arange(0)
    wrong = list(exemplars[wrong_class]) if wrong_class is not None else []
    wrong_order = rng.permutation(len(wrong)) if wrong else np.arange(0)
    prompts = []
    for draw in range(draws):
        turns = []
        if wrong:  # with only two classes there may be no class that is neither c nor top-1
            turns.append(Shot(wrong[wrong_order[draw % len(wrong)]], labels[top1], False))
        if right:
            turns.append(Shot(right[right_order[draw % len(right)]], labels[candidate], True))
        turns.append(Shot(query, labels[candidate], None))
        prompts.append(DICLPrompt(tuple(turns)))
    return prompts


@dataclass
class Decision:
    label: int
    candidates: list[int]
    gate_score: float
    gate_passed: bool
    p_true: dict[int, float] = field(default_factory=dict)
    calls: int = 0


def rectify(
    probs: torch.Tensor, query: Image.Image, matrix: torch.Tensor, exemplars: Exemplars,
    labels: Sequence[str], scorer: MLLMScorer, *, n_candidates: int, draws: int, threshold: float,
    rng: np.random.Generator, on_scored: Callable[[int, float, str], None] = lambda *_: None,
    shots: int = 2, negative_shot: str = "paper",
) -> Decision:
    candidates = [int(i) for i in probs.topk(min(n_candidates, len(labels))).indices]
    top1 = candidates[0]
    # The runner-up by CLIP probability, for the official code's negative shot at the gate.
    second = int(probs.topk(min(2, len(labels))).indices[-1]) if len(labels) > 1 else None

    def prompts_for(candidate: int) -> list[DICLPrompt]:
        return build_prompts(query, candidate, top1, matrix, exemplars, labels, draws, rng,
                             shots=shots, negative_shot=negative_shot, second=second)

    gate_scores = scorer.p_true(prompts_for(top1))
    decision = Decision(label=top1, candidates=candidates, gate_score=0.0, gate_passed=False,
                        p_true={top1: float(np.mean(gate_scores))}, calls=len(gate_scores))
    decision.gate_score = (decision.p_true[top1] + float(probs[top1])) / 2
    decision.gate_passed = decision.gate_score >= threshold
    on_scored(top1, decision.p_true[top1], "gate")
    if decision.gate_passed or len(candidates) == 1:
        return decision
    prompts: list[DICLPrompt] = []
    for candidate in candidates[1:]:  # all remaining prompts of this image in one scorer call
        prompts += prompts_for(candidate)
    scores = scorer.p_true(prompts)
    decision.calls += len(scores)
    for offset, candidate in enumerate(candidates[1:]):
        decision.p_true[candidate] = float(np.mean(scores[offset * draws : (offset + 1) * draws]))
        on_scored(candidate, decision.p_true[candidate], "p_true")
    # Highest belief wins; ties keep the CLIP's order (max returns the first).
    decision.label = max(candidates, key=lambda c: decision.p_true[c])
    return decision
