"""Errors of the disposition side. `detail` carries ids at most, never personal data."""

from __future__ import annotations

from records.errors import ConflictError, InvalidInputError, NotFoundError


class HoldNotFoundError(NotFoundError):
    code = "hold-not-found"
    title = "Legal hold not found"


class HoldAlreadyReleasedError(ConflictError):
    code = "hold-released"
    title = "Legal hold already released"


class InvalidHoldScopeError(InvalidInputError):
    code = "invalid-hold-scope"
    title = "Invalid legal hold scope"


class RunNotFoundError(NotFoundError):
    code = "purge-not-found"
    title = "Disposition run not found"


class RunNotPausedError(ConflictError):
    code = "purge-not-paused"
    title = "Disposition run is not waiting for approval"


class RunInProgressError(ConflictError):
    code = "purge-in-progress"
    title = "Another disposition run is in progress"


class CertificateNotReadyError(ConflictError):
    code = "certificate-not-ready"
    title = "The run has no certificate yet"
