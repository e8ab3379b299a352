"""Domain errors. Each carries its HTTP status; one handler in `lethe` renders RFC 9457 problems.

`detail` is shown to clients and logged: never put personal data in it (ids are fine).
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFoundError(DomainError):
    status = 404
    code = "not-found"
    title = "Not found"


class ConflictError(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidInputError(DomainError):
    status = 422
    code = "invalid-input"
    title = "Invalid input"


class UnauthenticatedError(DomainError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class ForbiddenError(DomainError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class TooManyRequestsError(DomainError):
    status = 429
    code = "too-many-requests"
    title = "Too many requests"
