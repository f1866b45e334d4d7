"""TDA (Karmanov et al., CVPR 2024): training-free adaptation with online caches of test
features, shared by every request of one tenant and label set.

Per image: encode the views, keep the most confident fraction (as TPT), and take the mean of
their features and logits, their marginal entropy and mean probabilities. The image enters the
positive cache under its pseudo-label, and the negative cache when its normalised entropy is
middling; then the prediction is the mean logits plus the positive cache's logits minus the
negative cache's. The update is applied through the engine's state store at most once per
job image (``MethodInput.update_id``), so a redelivered job cannot add itself twice.
"""

from __future__ import annotations

import torch

from adapters.base import Method, Stopwatch, build_result, score_views
from adapters.selection import marginal_entropy, select_confident
from adapters.state_store import InMemoryStateStore, StateStore
from adapters.tda_cache import Entry, TDACache, add_entry, cache_logits, normalised_entropy
from adapters.types import AdaptationResult, Hooks, MethodInput, Models
from contract.method_options import TDAOptions
from contract.state_scope import labels_digest


def summarise(logits: torch.Tensor, features: torch.Tensor,
              selection: float) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """(mean feature [D], mean logits [C], entropy, mean probabilities [C]) of the confident
    views; a single view is used as it is."""
    if logits.shape[0] == 1:
        log_p = logits[0].log_softmax(-1)
        return features[0], logits[0], float(-(log_p.exp() * log_p).sum()), log_p.exp()
    kept = select_confident(logits, selection)
    output = logits[kept]
    return (features[kept].mean(0), output.mean(0), float(marginal_entropy(output)),
            output.softmax(-1).mean(0))


def apply_image(cache: TDACache, feature: torch.Tensor, loss: float, probs: torch.Tensor,
                pred: int, options: TDAOptions) -> TDACache:
    add_entry(cache.positive, pred, Entry(feature, loss), options.pos_shots)
    if options.neg_entropy_low < normalised_entropy(loss, probs.shape[0]) < options.neg_entropy_high:
        add_entry(cache.negative, pred, Entry(feature, loss, probs), options.neg_shots)
    cache.images += 1
    return cache


def adapted_logits(cache: TDACache, feature: torch.Tensor, logits: torch.Tensor,
                   options: TDAOptions) -> torch.Tensor:
    n = logits.shape[0]
    positive = cache_logits(feature, cache.positive, options.pos_alpha, options.pos_beta, n)
    negative = cache_logits(feature, cache.negative, options.neg_alpha, options.neg_beta, n,
                            (options.neg_mask_low, options.neg_mask_high))
    return logits + positive - negative


class TDA(Method):
    name = "tda"

    def __init__(self) -> None:
        self.fallback_store = InMemoryStateStore()

    def run(
        self, inp: MethodInput, models: Models, options: TDAOptions, hooks: Hooks
    ) -> AdaptationResult:
        watch = Stopwatch()
        features_set, tops, logits_set = score_views(models, [inp], options, [hooks])
        features, zeroshot_top, logits = features_set[0], tops[0], logits_set[0]
        feature, mean_logits, loss, probs = summarise(logits.cpu(), features.cpu(), options.selection)
        pred = int(mean_logits.argmax())

        store: StateStore = inp.state_store or self.fallback_store
        group = f"tda:{inp.state_key}"
        field = f"{models.policy.name}|{labels_digest(inp.labels)}|{labels_digest(inp.templates)}"
        state, applied = store.update(
            group, field, inp.update_id,
            lambda old: apply_image(TDACache.from_bytes(old), feature, loss, probs, pred,
                                    options).to_bytes())
        cache = TDACache.from_bytes(state)
        final = adapted_logits(cache, feature, mean_logits, options)
        metrics = {
            "steps": 0, "views": options.n_views, "cache_images": cache.images,
            "cache_positive": sum(len(v) for v in cache.positive.values()),
            "cache_negative": sum(len(v) for v in cache.negative.values()),
            "cache_updated": applied, "compute_ms": watch.ms(),
        }
        return build_result(final.softmax(-1), zeroshot_top, inp, metrics)
