"""One exception tree for the whole system.

Each error carries a stable machine-readable ``code`` and the HTTP status it maps to, declared once here;
the HTTP edge turns any of them into ``{"error": {"code": ..., "message": ...}}``. Sockets use the same codes.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error the system reports to a client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: Any = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        #: Seconds a client should wait before trying again (sent as ``Retry-After``, RFC 9110 section 10.2.3).
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class InvalidJson(BadRequest):
    code = "invalid_json"


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"


class TokenExpired(Unauthenticated):
    code = "token_expired"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class MethodNotAllowed(AppError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(AppError):
    status = 408
    code = "request_timeout"


class Conflict(AppError):
    status = 409
    code = "conflict"


class NotStreaming(Conflict):
    """The unit has no live media here now: the screens say so in the user's language by this code."""

    code = "not_streaming"


class NoDutyPost(Conflict):
    """A duty sign-in by someone the day's roster does not name."""

    code = "no_duty_post"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(AppError):
    status = 503
    code = "unavailable"


class FencedOut(Conflict):
    """A write made under a lease whose grant is older than one the store has already seen: another process
    took the work over (``core.fencing``); the writer must stop that work, not retry it."""

    code = "fenced_out"


class CheckpointFork(Conflict):
    """A lower court's checkpoint names a different head for a sequence number already witnessed."""

    code = "checkpoint_fork"


class CheckpointBackwards(Conflict):
    """A lower court's checkpoint is older than one already witnessed: its chain went backwards."""

    code = "checkpoint_backwards"


class CaseNotUnderWay(Conflict):
    """The case is 终本 or 结案 in the case-management system: nothing more may be queried on it."""

    code = "case_not_under_way"


class StartupFailed(AppError):
    """A component could not start: the server stops what it started and ``serve`` exits non-zero."""

    status = 500
    code = "startup_failed"
