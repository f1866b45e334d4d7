
"""The ``mllm`` method in ``tta bench accuracy``: DICL with the bundled world MLLM (or
``--mllm``/``TTA_MLLM``) on the world's test samples, with a label set of ``EXEMPLARS_PER_CLASS``
exemplars per class drawn from ``train`` scenes (seeds from ``EXEMPLAR_SEEDS``: neither the
MLLM's training seeds nor validation nor test).

Besides top-1 and ECE it reports, per variant and domain, what the rectification did: MLLM
calls per image (the worst case is n x r), how often the gate kept the CLIP label, how often a
changed label was right and how often wrong.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from adapters.engine import RunContext
from bench import tables
from bench.runs import Row, parse_variant
from world.data import TEST_SEEDS, sample_arrays
from world.ece import expected_calibration_error
from world.glyphs import CLASS_NAMES

DEFAULT_MLLM = "world-mllm"


@dataclass(frozen=True)
class MLLMStats:
    method: str
    domain: str
    accuracy: float
    zeroshot_accuracy: float
    calls_per_image: float
    gate_kept: float
    """Fraction of images whose CLIP label the gate kept (r calls only)."""
    changed: float
    changed_right: int
    """Changed labels that became right (the CLIP was wrong)."""
    changed_wrong: int
    """Changed labels that are wrong (whether or not the CLIP was right)."""
    broke: int
    """Of those, the CLIP label was right: the MLLM made it worse."""


MLLM_ALONE = "mllm-alone"
"""Not a service method: the MLLM as a classifier on its own (every class asked, no exemplars,
no CLIP), to show how well it sees apart from what the exemplars and the CLIP add."""


def uses_mllm(variant: str) -> bool:
    return variant.partition(":")[0] in ("mllm", MLLM_ALONE)


def evaluate_mllm_alone(scorer: Any, domain: str, n_per_class: int, progress: Any,
                        seed_base: int = TEST_SEEDS) -> Row:
    """Top-1 = the class whose "Is this a photo of a ...?" gets the highest P(True); its
    confidence, that P(True) over the sum across classes."""
    from models.mllm.prompts import DICLPrompt, Shot

    images, labels, _ = sample_arrays(domain, n_per_class, seed_base=seed_base)
    confidences, correct, times = [], [], []
    for pixels, label in zip(images, labels, strict=True):
        start = time.perf_counter()
        image = Image.fromarray(pixels)
        p_true = np.array(scorer.p_true([DICLPrompt((Shot(image, name, None),)) for name in CLASS_NAMES]))
        times.append((time.perf_counter() - start) * 1000.0)
        confidences.append(float(p_true.max() / max(p_true.sum(), 1e-12)))
        correct.append(int(p_true.argmax()) == int(label))
        progress()
    return Row(MLLM_ALONE, domain, round(float(np.mean(correct)), 4),
               round(expected_calibration_error(np.array(confidences), np.array(correct)), 4),
               round(statistics.median(times), 2), round(statistics.mean(times), 2))


def load_bench_scorer(spec: str | None) -> Any:
    from models.mllm.loading import load_scorer

    return load_scorer(spec or DEFAULT_MLLM)


def evaluate_mllm(engine: Any, variant: str, domain: str, n_per_class: int, progress: Any,
                  exemplars: dict[int, list[Image.Image]],
                  seed_base: int = TEST_SEEDS) -> tuple[Any, MLLMStats]:

    method, options = parse_variant(variant)
    images, labels, _ = sample_arrays(domain, n_per_class, seed_base=seed_base)
    confidences, correct, zeroshot_correct, times = [], [], [], []
    calls, kept, right, wrong, broke = [], [], 0, 0, 0
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        start = time.perf_counter()
        context = RunContext(exemplars=exemplars, label_set_version="world-bench",
                             state_key=f"bench|{variant}|{domain}")
        result = engine.classify(method, Image.fromarray(pixels), CLASS_NAMES, options=options, top_k=1,
                                 seed=index, context=context)
        times.append((time.perf_counter() - start) * 1000.0)
        truth = CLASS_NAMES[label]
        confidences.append(result.score)
        correct.append(result.label == truth)
        zeroshot_correct.append(result.zeroshot_top_k[0].label == truth)
        calls.append(result.metrics["mllm_calls"])
        kept.append(result.metrics["gate_passed"])
        if result.changed:
            right += result.label == truth
            wrong += result.label != truth
            broke += zeroshot_correct[-1]
        progress()
    row = Row(variant, domain, round(float(np.mean(correct)), 4),
              round(expected_calibration_error(np.array(confidences), np.array(correct)), 4),
              round(statistics.median(times), 2))
    stats = MLLMStats(variant, domain, row.accuracy, round(float(np.mean(zeroshot_correct)), 4),
                      round(float(np.mean(calls)), 2), round(float(np.mean(kept)), 4),
                      round((right + wrong) / len(images), 4), right, wrong, broke)
    return row, stats


def print_mllm_table(stats: list[MLLMStats]) -> None:
    from service.cli.common import print_table

    print_table(*tables.mllm({"mllm": {"stats": [asdict(s) for s in stats]}}))
