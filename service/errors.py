"""Service-level errors (torch-free). Like ``models.errors``, each means one thing; the API maps
them to HTTP statuses in exactly one place (``service.api.errors``)."""

from __future__ import annotations

from models.errors import InvalidInputError, TTAError


class RetryLaterError(TTAError):
    """A load limit: the same request may succeed after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFullError(RetryLaterError):
    code = "queue_full"


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
