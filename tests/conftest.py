"""Shared fixtures: tiny open_clip models with random weights, built from the project's configs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from adapters.engine import Engine, load_models
from adapters.types import Models
from models.reward import RewardModel

POLICY = "tta-tiny:random"
REWARD = "tta-tiny-reward:random"
LABELS = ("red ball", "blue car", "green tree", "yellow kettle", "black cat")


@pytest.fixture(scope="session")
def models() -> Models:
    return load_models(POLICY, REWARD, device="cpu")


@pytest.fixture(scope="session")
def engine(models: Models) -> Engine:
    return Engine(models)


def make_image(seed: int = 0, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A noisy background with a coloured disc: structure for the crops to differ on."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 80).astype("uint8")
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    x, y = int(rng.integers(10, size[0] - 40)), int(rng.integers(10, size[1] - 40))
    draw.ellipse((x, y, x + 30, y + 30), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def self_reward_models(models: Models) -> Models:
    """The policy's own CLIP as the reward model. Two different random tiny CLIPs give
    all-negative cosines (every reward clamps to 0); a model agrees with itself on some classes,
    so rewards are non-trivial. Only for tests of the optimisation."""
    return Models(policy=models.policy, reward=RewardModel(models.policy))


@pytest.fixture
def image() -> Image.Image:
    return make_image(0)
