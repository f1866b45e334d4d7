"""Expected calibration error."""

from __future__ import annotations

import numpy as np


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    total = sum(count for _, _, count in reliability_bins(confidence, correct, bins))
    return float(sum(count / total * abs(accuracy - mean) for mean, accuracy, count
                     in reliability_bins(confidence, correct, bins))) if total else 0.0


def reliability_bins(confidence: np.ndarray, correct: np.ndarray,
                     bins: int = 15) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) of each non-empty equal-width confidence bin: the
    points of a reliability diagram."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [(float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]
