"""The shape of a DICL prompt, shared by every backend (torch-free).

Three image-question pairs in one conversation: an exemplar of a confusable class asked about the
CLIP's top-1 label and answered False, an exemplar of the candidate asked about the candidate and
answered True, and the test image asked about the candidate, left for the model to answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from contract.errors import TTAError

QUESTION = "Is this a photo of a {}? Answer True or False."
ANSWERS = {True: "True", False: "False"}


class MLLMError(TTAError):
    """The MLLM backend failed (unreachable, timed out, or gave no True/False answer)."""

    code = "mllm_failed"


@dataclass(frozen=True)
class Shot:
    image: Image.Image
    label: str
    answer: bool | None
    """None for the query, whose answer the model gives."""

    @property
    def question(self) -> str:
        return QUESTION.format(self.label)


@dataclass(frozen=True)
class DICLPrompt:
    shots: tuple[Shot, ...]

    def chat_messages(self, image_part: Any) -> list[dict[str, Any]]:
        """Chat-completions style messages; ``image_part(image)`` gives a content part for an
        image (``{"type": "image"}`` for transformers, a data URL for HTTP servers)."""
        messages: list[dict[str, Any]] = []
        for shot in self.shots:
            messages.append({"role": "user", "content": [image_part(shot.image),
                                                         {"type": "text", "text": shot.question}]})
            if shot.answer is not None:
                messages.append({"role": "assistant",
                                 "content": [{"type": "text", "text": ANSWERS[shot.answer]}]})
        return messages


class MLLMScorer(Protocol):
    name: str

    def p_true(self, prompts: list[DICLPrompt]) -> list[float]:
        """For each prompt, P(True) of the first answer token (softmax over True/False)."""
        ...
