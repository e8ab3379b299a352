"""Errors of connectors. Messages name files, lines, fields, tables and columns: never values."""

from __future__ import annotations

from records.errors import DomainError, InvalidInputError, NotFoundError


class MappingError(InvalidInputError):
    """A mapping file that cannot be used. `extra["errors"]`: `[{file, line, field, reason}]`."""

    code = "invalid-connector-mapping"
    title = "Invalid connector mapping"


class ConnectorNotFoundError(NotFoundError):
    code = "connector-not-found"
    title = "Connector not found"


class SecretMissingError(DomainError):
    status = 503
    code = "connector-secret-missing"
    title = "Connector secret missing"


class SourceError(DomainError):
    """The source database refused or could not be reached; `detail` names the error class."""

    status = 503
    code = "connector-source-error"
    title = "Source system error"
