"""Every error the service names, each meaning one thing, with its stable ``code``. Raised
where the problem is found (API, worker, models, methods); translated to HTTP statuses in
exactly one place (``service.api.errors``) and to exit codes in the CLI."""

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


class UnsupportedImageFormatError(InvalidImageError):
    code = "unsupported_image_format"


class ImageTooLargeError(InvalidImageError):
    code = "image_too_large"


# Service-level errors: load, access and the state of what a tenant stores.
class RetryLaterError(TTAError):
    """A load limit: the same request may succeed after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFullError(RetryLaterError):
    code = "queue_full"


class NotReplicatedError(RetryLaterError):
    """The job reached the Redis master but not its replicas in time: it is withdrawn (failed
    with this code), so a failover cannot lose an acknowledged job and a retry cannot run twice."""

    code = "not_replicated"


class TooManyInflightError(RetryLaterError):
    code = "too_many_inflight"


class NoCapableWorkerError(RetryLaterError):
    """No live worker serves the method (or model) asked for."""

    code = "no_capable_worker"


class BackendUnavailableError(TTAError):
    """Redis does not answer; retry later."""

    code = "backend_unavailable"


class UnauthorizedError(TTAError):
    code = "unauthorized"


class NotFoundError(TTAError):
    code = "not_found"


class QuotaExceededError(TTAError):
    """The key holds as many of a resource as its quota allows; delete some first."""

    code = "quota_exceeded"


class InUseError(TTAError):
    """The resource cannot be deleted while something refers to it."""

    code = "in_use"


class RequestTooLargeError(InvalidInputError):
    code = "request_too_large"


class MalformedRequestError(InvalidInputError):
    code = "malformed_request"


class TooManyImagesError(InvalidInputError):
    code = "too_many_images"
