"""Training conversations for the world MLLM, in exactly the shapes the ``mllm`` method sends.

Every conversation is a ``DICLPrompt`` (``models/mllm/prompts.py``) over images of a bank of
``train`` scenes, templated by the model's own processor, with the answer to the last question
as the target:

- ``dicl``: a negative exemplar turn answered False, a positive exemplar turn answered True, the
  query asked about the candidate (the paper's and the official code's negative shots are both
  "an image of class j asked about a label k != j");
- ``positive``: the positive exemplar turn and the query (the one-shot ablation's shape);
- ``plain``: the query alone (the no-exemplar shape).

With probability ``shuffle_names`` the class names of a conversation with exemplars are
permuted, so the name says nothing and only the exemplar does: the model must learn to compare
the query with the exemplars in context, not only to recognise class names.

Names in ``unknown`` are the long tail the language model never saw tied to their images (a real
MLLM knows "cup" but not every fine-grained label a user sends): in every conversation they are
permuted among themselves, so such a name only says "one of the rare classes", and an exemplar is
the one way to learn in context which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from models.mllm.prompts import DICLPrompt, Shot

KINDS = (("dicl", 0.5), ("positive", 0.2), ("plain", 0.3))
_PLACEHOLDER = Image.new("RGB", (1, 1))


@dataclass(frozen=True)
class Conversation:
    text: str
    """The templated prompt, ending where the model answers."""
    images: tuple[int, ...]
    """Bank indices, in the order of the ``<image>`` tokens."""
    answer: bool
    candidate: int
    query_class: int
    truthful: tuple[bool, ...] = ()
    """Per question: whether the asked name is the image's class (for the naming loss)."""


class ConversationSampler:
    def __init__(self, processor: object, labels: np.ndarray, names: tuple[str, ...],
                 rng: np.random.Generator, shuffle_names: float = 0.3,
                 unknown: frozenset[int] = frozenset()) -> None:
        self.processor = processor
        self.names = names
        self.rng = rng
        self.shuffle_names = shuffle_names
        self.unknown = np.array(sorted(unknown), dtype=int)
        self.unknown_set = set(unknown)
        self.labels = labels
        self.by_class = [np.flatnonzero(labels == c) for c in range(len(names))]

    def _other(self, *exclude: int) -> int:
        while True:
            pick = int(self.rng.integers(len(self.names)))
            if pick not in exclude:
                return pick

    def _image(self, cls: int, *exclude: int) -> int:
        pool = self.by_class[cls]
        while True:
            pick = int(pool[self.rng.integers(len(pool))])
            if pick not in exclude:
                return pick

    def _negative_shot(self, candidate: int, query: int) -> tuple[int, int]:
        """(image class j, asked label k), j != k, mixing the shapes the method sends: k is the
        CLIP's top-1 (often the query's class or the candidate itself), j a confusable class,
        the candidate itself (official code) or any other."""
        roll = self.rng.random()
        asked = candidate if roll < 0.4 else query if roll < 0.7 and query != candidate else self._other()
        roll = self.rng.random()
        if roll < 0.3 and candidate != asked:
            shown = candidate
        elif roll < 0.5 and query != asked:
            shown = query
        else:
            shown = self._other(asked)
        return shown, asked

    def sample(self) -> Conversation:
        kind = KINDS[int(self.rng.choice(len(KINDS), p=[w for _, w in KINDS]))][0]
        candidate = int(self.rng.integers(len(self.names)))
        answer = bool(self.rng.random() < 0.5)
        query = candidate if answer else self._other(candidate)
        names = self.names
        shuffled = kind != "plain" and self.rng.random() < self.shuffle_names
        if shuffled:
            names = tuple(self.names[i] for i in self.rng.permutation(len(self.names)))
        elif len(self.unknown):
            order = np.arange(len(self.names))
            order[self.unknown] = self.rng.permutation(self.unknown)
            names = tuple(self.names[i] for i in order)
        shots: list[tuple[int, int, bool | None]] = []  # (bank image, asked class, answer)
        if kind == "dicl":
            shown, asked = self._negative_shot(candidate, query)
            shots.append((self._image(shown), asked, False))
        if kind != "plain":
            shots.append((self._image(candidate, *(s[0] for s in shots)), candidate, True))
        shots.append((self._image(query, *(s[0] for s in shots)), candidate, None))
        prompt = DICLPrompt(tuple(Shot(_PLACEHOLDER, names[asked], said) for _, asked, said in shots))
        text = self.processor.apply_chat_template(  # type: ignore[attr-defined]
            prompt.chat_messages(lambda _: {"type": "image"}), add_generation_prompt=True,
            tokenize=False)
        truthful = tuple(not shuffled and int(self.labels[image]) == asked and asked not in self.unknown_set
                         for image, asked, _ in shots)
        return Conversation(text, tuple(s[0] for s in shots), answer, candidate, query, truthful)
