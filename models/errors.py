"""Exceptions that each mean one thing. Raised in the core; translated to exit codes (CLI)
and HTTP statuses (API) in exactly one place each. Torch-free on purpose."""

from __future__ import annotations


class TTAError(Exception):
    """Base class. ``code`` is stable and machine-readable; the message is for humans."""

    code = "tta_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInputError(TTAError):
    """The caller sent something we cannot work with (labels, options, image)."""

    code = "invalid_input"


class InvalidLabelsError(InvalidInputError):
    code = "invalid_labels"


class InvalidOptionsError(InvalidInputError):
    code = "invalid_options"


class InvalidImageError(InvalidInputError):
    code = "invalid_image"


class UnknownModelError(TTAError):
    code = "unknown_model"


class UnknownMethodError(TTAError):
    code = "unknown_method"


class MissingRewardModelError(TTAError):
    code = "reward_model_required"


class MissingMLLMError(TTAError):
    code = "mllm_required"


class ModelLoadError(TTAError):
    """A known model name whose weights could not be loaded (offline hub, corrupt file)."""

    code = "model_load_failed"
