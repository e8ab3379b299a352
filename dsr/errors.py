"""Errors of data-subject requests. `detail` never carries personal data."""

from __future__ import annotations

from records.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    TooManyRequestsError,
)


class RequestNotFoundError(NotFoundError):
    code = "request-not-found"
    title = "Request not found"


class WrongCodeError(DomainError):
    status = 400
    code = "wrong-code"
    title = "Wrong or expired code"


class TooManyAttemptsError(TooManyRequestsError):
    code = "too-many-attempts"
    title = "Too many attempts"


class IntakeRateLimitedError(TooManyRequestsError):
    code = "intake-rate-limited"
    title = "Too many requests"


class RequestStateError(ConflictError):
    code = "request-state"
    title = "Not possible in the request's current state"


class ExtensionRefusedError(ConflictError):
    code = "extension-refused"
    title = "Extension refused"


class InvalidRequestError(InvalidInputError):
    code = "invalid-request"
    title = "Invalid request"


class PackageAccessError(ForbiddenError):
    code = "package-access"
    title = "Package not available"


class NotificationError(DomainError):
    status = 503
    code = "notification-failed"
    title = "Notification failed"
