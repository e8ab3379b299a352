"""Errors of the audit trail. `detail` carries indexes and sizes only."""

from __future__ import annotations

from records.errors import ConflictError, InvalidInputError, NotFoundError


class AuditDetailsError(InvalidInputError):
    """An entry's details are not canonical-JSON-able (a float, a non-string key, …)."""

    code = "audit-details-invalid"
    title = "Audit details not allowed"


class AuditRangeError(InvalidInputError):
    code = "audit-range-invalid"
    title = "Invalid audit range"


class CheckpointNotFoundError(NotFoundError):
    code = "checkpoint-not-found"
    title = "No checkpoint yet"


class AuditStateError(ConflictError):
    code = "audit-state"
    title = "Audit log state"
