"""Errors of the policy registry. Messages name files, lines and fields, never personal data."""

from __future__ import annotations

from records.errors import DomainError, InvalidInputError, NotFoundError


class PolicyFileError(InvalidInputError):
    """A policy file that cannot be loaded. `extra["errors"]`: `[{file, line, field, reason}]`."""

    code = "invalid-policy"
    title = "Invalid policy file"


class PolicyNotFoundError(NotFoundError):
    code = "policy-not-found"
    title = "Processing record not found"


class UnsupportedPolicyMediaType(DomainError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class PolicyTooLargeError(DomainError):
    status = 413
    code = "policy-too-large"
    title = "Policy file too large"
