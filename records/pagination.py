"""Keyset pagination for every list route, and strict query strings.

A list route takes `limit` (1..1000, default 100) and `after` (an opaque cursor it handed out)
and answers the same JSON array as before; while there is more it adds an RFC 8288
`Link: <…>; rel="next"` header. Keyset, not offset: a deep page costs what the first one does,
and rows written or deleted between two calls neither repeat nor drop out of the pages to come.

A cursor is the sort key of the last row served (base64url JSON), decoded with the types of the
sort columns, so a forged one can only move the window, never reach past the route's filters.

`PageDep` also refuses query parameters the route does not declare: a mistyped filter
(`?statsu=open`) must be a 422, not a silently unfiltered list.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import and_, or_
from sqlalchemy.sql import Select

from records.errors import InvalidInputError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 512

T = TypeVar("T")
Key = tuple[Any, ...]


class InvalidCursorError(InvalidInputError):
    code = "invalid-cursor"
    title = "Invalid cursor"


class UnknownQueryParameterError(InvalidInputError):
    code = "unknown-query-parameter"
    title = "Unknown query parameter"


def encode_cursor(key: Key) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    values = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_value(value: Any, kind: type) -> Any:
    if kind is datetime:
        if not isinstance(value, str):
            raise ValueError("not a timestamp")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed
    if kind is uuid.UUID:
        if not isinstance(value, str):
            raise ValueError("not a uuid")
        return uuid.UUID(value)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("not an integer")
        return value
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def decode_cursor(token: str, types: Sequence[type]) -> Key:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("wrong shape")
        return tuple(_decode_value(v, t) for v, t in zip(values, types, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError("after: not a cursor this list handed out") from exc


def _python_type(sql_type: Any) -> type:
    # A TypeDecorator (UTCDateTime) reports `object`; what it stores is its impl's type.
    impl = getattr(sql_type, "impl_instance", sql_type)
    kind: type = impl.python_type
    return kind


class Keyset:
    """The sort order of one list, unique thanks to its last column (an id)."""

    def __init__(self, *columns: Any) -> None:
        self.columns = columns
        self.names = tuple(str(c.key) for c in columns)
        self.types: tuple[type, ...] = tuple(_python_type(c.type) for c in columns)

    def apply(self, stmt: Select[Any], *, after: Key | None, limit: int | None) -> Select[Any]:
        """`stmt` ordered by the key, after `after`, at most `limit` rows."""
        if after is not None:
            # (a, b) > (x, y) spelled out: row values with typed binds on every backend.
            clauses = []
            for i, column in enumerate(self.columns):
                equal = [self.columns[j] == after[j] for j in range(i)]
                clauses.append(and_(*equal, column > after[i]))
            stmt = stmt.where(or_(*clauses))
        stmt = stmt.order_by(*self.columns)
        return stmt if limit is None else stmt.limit(limit)

    def key_of(self, row: Any) -> Key:
        return tuple(getattr(row, name) for name in self.names)


@dataclass(frozen=True)
class Page:
    """What the client asked for: `limit` rows after the position `after` encodes."""

    limit: int
    after: str | None
    request: Request
    response: Response

    @property
    def fetch(self) -> int:
        """Rows to read: one more than served tells whether a next page exists."""
        return self.limit + 1

    def position(self, types: Sequence[type] | Keyset) -> Key | None:
        if self.after is None:
            return None
        return decode_cursor(self.after, types.types if isinstance(types, Keyset) else types)

    def finish(self, rows: Sequence[T], key: Callable[[T], Key] | Keyset) -> list[T]:
        """The rows to serve (at most `limit`), with a `Link: rel="next"` header if more."""
        key_of = key.key_of if isinstance(key, Keyset) else key
        served = list(rows[: self.limit])
        if len(rows) > self.limit and served:
            cursor = encode_cursor(key_of(served[-1]))
            url = self.request.url.include_query_params(limit=self.limit, after=cursor)
            target = url.path + ("?" + url.query if url.query else "")
            self.response.headers["Link"] = f'<{target}>; rel="next"'
        return served

    def window(
        self, items: Iterable[T], *, key: Callable[[T], Key], types: Sequence[type]
    ) -> list[T]:
        """Paginate a list already in memory (a registry of a few records, a bucket's matches)."""
        after = self.position(types)
        ordered = sorted(items, key=key)
        if after is not None:
            ordered = [item for item in ordered if key(item) > after]
        return self.finish(ordered[: self.fetch], key)


_declared: dict[int, frozenset[str]] = {}


def _declared_query(route: APIRoute) -> frozenset[str]:
    known = _declared.get(id(route))
    if known is None:
        names: set[str] = set()
        pending: list[Dependant] = [route.dependant]
        while pending:
            dependant = pending.pop()
            names.update(p.alias for p in dependant.query_params)
            pending.extend(dependant.dependencies)
        known = frozenset(names)
        _declared[id(route)] = known
    return known


def strict_query(request: Request) -> None:
    """422 on a query parameter the route does not declare (a mistyped filter)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _declared_query(route))
    if unknown:
        # A name the caller made up is a value too (an address sent as a key): only what looks
        # like a parameter name (a mistyped filter) is named back.
        names = ", ".join(n if _PARAMETER_NAME.fullmatch(n) else "(key)" for n in unknown[:5])
        raise UnknownQueryParameterError(f"unknown query parameters: {names}")


_PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def page_params(
    request: Request,
    response: Response,
    _strict: Annotated[None, Depends(strict_query)],
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Rows per page (1 to {MAX_LIMIT}).")
    ] = DEFAULT_LIMIT,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR,
            pattern=r"^[A-Za-z0-9_-]+$",
            description='The cursor of the `Link: rel="next"` header of the previous page.',
        ),
    ] = None,
) -> Page:
    return Page(limit=limit, after=after, request=request, response=response)


PageDep = Annotated[Page, Depends(page_params)]

NEXT_LINK_HEADER: dict[str, Any] = {
    "Link": {
        "description": 'RFC 8288 `<…>; rel="next"` while more rows follow this page.',
        "schema": {"type": "string"},
    }
}
