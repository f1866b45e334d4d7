"""Shared fixtures: tiny open_clip models with random weights, built from the project's configs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from adapters.engine import Engine, load_models
from adapters.types import Models
from models.mllm.prompts import DICLPrompt
from models.reward import RewardModel

POLICY = "tta-tiny:random"
REWARD = "tta-tiny-reward:random"
LABELS = ("red ball", "blue car", "green tree", "yellow kettle", "black cat")


class ScriptedScorer:
    """A stand-in MLLM (no MLLM weights can run here): P(True) is ``belief`` for a query about
    the ``supported`` label and ``doubt`` otherwise. Records every prompt it scores."""

    name = "scripted"

    def __init__(self, supported: str = "", belief: float = 0.9, doubt: float = 0.1) -> None:
        self.supported, self.belief, self.doubt = supported, belief, doubt
        self.prompts: list[DICLPrompt] = []
        self.calls: list[int] = []

    def p_true(self, prompts: list[DICLPrompt]) -> list[float]:
        self.prompts += prompts
        self.calls.append(len(prompts))
        return [self.belief if p.shots[-1].label == self.supported else self.doubt for p in prompts]


def make_exemplars(n_classes: int = len(LABELS), per_class: int = 3) -> dict[int, list[Image.Image]]:
    """Per class, distinct generated images tagged with their class (``image.info``)."""
    exemplars: dict[int, list[Image.Image]] = {}
    for index in range(n_classes):
        exemplars[index] = []
        for number in range(per_class):
            image = make_image(100 + 10 * index + number)
            image.info["class"] = index
            exemplars[index].append(image)
    return exemplars


@pytest.fixture(scope="session")
def models() -> Models:
    return load_models(POLICY, REWARD, device="cpu", mllm=ScriptedScorer())


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
    return Models(policy=models.policy, reward=RewardModel(models.policy), mllm=models.mllm)


@pytest.fixture
def image() -> Image.Image:
    return make_image(0)
