"""The bundled world CLIPs load by name and classify the world's clean domain."""

import numpy as np
import pytest

from models.bundled import get_bundled
from models.loading import load_clip
from world.data import TEST_SEEDS
from world.glyphs import CLASS_NAMES
from world.train import zero_shot_accuracy

# Floors well under the measured accuracies (README), so a broken checkpoint or loader fails
# while the numbers stay stable across torch versions.
CLEAN_ACCURACY_FLOOR = {"world-policy": 0.75, "world-reward": 0.75}
CHANCE = 1 / len(CLASS_NAMES)


@pytest.mark.parametrize("name", sorted(CLEAN_ACCURACY_FLOOR))
def test_bundled_model_reaches_its_clean_accuracy_floor(name):
    bundled = get_bundled(name)
    assert bundled.checkpoint.is_file()
    assert bundled.checkpoint.stat().st_size < 20e6
    accuracy = zero_shot_accuracy(load_clip(name, "cpu"), "clean", 4, TEST_SEEDS)
    assert accuracy >= CLEAN_ACCURACY_FLOOR[name], accuracy
    assert accuracy > 5 * CHANCE


def test_bundled_checkpoints_fit_the_size_budget():
    total = sum(get_bundled(n).checkpoint.stat().st_size for n in CLEAN_ACCURACY_FLOOR)
    assert total <= 25 * 2**20


def test_reward_model_is_larger_than_policy():
    sizes = {n: sum(p.numel() for p in load_clip(n, "cpu").model.visual.parameters())
             for n in CLEAN_ACCURACY_FLOOR}
    assert sizes["world-reward"] > 2 * sizes["world-policy"]
    assert np.isfinite(list(sizes.values())).all()
