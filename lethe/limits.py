"""Request limits at the ASGI edge, before any route, parser or database sees the request.

One mechanism for every route:
- a body-size limit: `max_body_bytes` for every route, `max_import_bytes` for the streamed bulk
  import. A declared `Content-Length` over the limit is refused before a byte is read; a chunked
  or under-declared body is counted as it arrives. 413 problem.
- a JSON check of every buffered body FastAPI would parse as JSON: nesting deeper than
  `MAX_JSON_DEPTH` (the stdlib parser recurses, a deep body used to end in a RecursionError 500),
  NaN/Infinity (not JSON, but `json.loads` accepts them), NUL and lone surrogates in any string or
  key, and 64-bit overflow. 422 problem.
- the path and the query string: NUL, invalid UTF-8 or lone surrogates after percent-decoding
  are a 422 (PostgreSQL refuses NUL in a text parameter; SQLite would not: both must agree).

Problems never echo the content: it may be personal data, or the attack itself.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lethe.errors import problem
from records.errors import DomainError
from records.types import MAX_JSON_DEPTH, json_problem, unsafe_text_reason

STREAMED_PATHS = frozenset({"/v1/imports"})


class BodyTooLargeError(DomainError):
    """Raised from `receive` while a streaming route reads past its limit."""

    status = 413
    code = "payload-too-large"
    title = "Payload too large"


def _too_large(limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(f"the request body is larger than {limit} bytes", limit=limit)


class _Refused(Exception):
    def __init__(self, status: int, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value).decode("latin-1")
    return ""


def is_json(content_type: str) -> bool:
    """What FastAPI parses as JSON: no content type, `application/json` or `application/*+json`."""
    media = content_type.split(";")[0].strip().lower()
    if not media:
        return True
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def json_body_problem(body: bytes) -> str | None:
    """Why this JSON body is refused, or None (also None when it is not JSON: FastAPI says so)."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    except json.JSONDecodeError:
        return None
    except ValueError:
        return "NaN and Infinity are not JSON numbers"
    return json_problem(value)


def _text_problem(raw: bytes, where: str) -> str | None:
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return f"the {where} is not UTF-8"
    reason = unsafe_text_reason(decoded)
    return f"the {where}: {reason}" if reason else None


def url_problem(scope: Scope) -> str | None:
    raw_path = scope.get("raw_path")
    path_reason = (
        _text_problem(raw_path, "path")
        if isinstance(raw_path, bytes)
        else (unsafe_text_reason(str(scope.get("path", ""))))
    )
    return path_reason or _text_problem(scope.get("query_string", b""), "query string")


class RequestLimits:
    """ASGI middleware; `create_app` installs it outermost."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_import_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_import_bytes = max_import_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reason = url_problem(scope)
        if reason is not None:
            await _send_problem(scope, send, 422, "invalid-input", "Invalid input", reason)
            return
        streamed = scope.get("path") in STREAMED_PATHS
        limit = self.max_import_bytes if streamed else self.max_body_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            error = _too_large(limit)
            await _send_problem(scope, send, error.status, error.code, error.title, error.detail)
            return
        if streamed:
            await self.app(scope, _counting(receive, limit), send)
            return
        try:
            body, last = await _buffer(receive, limit)
        except _Refused as refused:
            await _send_problem(
                scope, send, refused.status, refused.code, refused.title, refused.detail
            )
            return
        if body and is_json(_header(scope, b"content-type")):
            reason = json_body_problem(body)
            if reason is not None:
                await _send_problem(scope, send, 422, "invalid-input", "Invalid input", reason)
                return
        await self.app(scope, _replay(body, last, receive), send)


async def _buffer(receive: Receive, limit: int) -> tuple[bytes, Message | None]:
    """The whole body (at most `limit` bytes), and a disconnect message if one came instead."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            error = _too_large(limit)
            raise _Refused(error.status, error.code, error.title, error.detail)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, last: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if last is not None and not body:
                return last
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # an http.disconnect, when the client goes

    return replay


def _counting(receive: Receive, limit: int) -> Receive:
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise _too_large(limit)
        return message

    return counted


async def _send_problem(
    scope: Scope, send: Send, status: int, code: str, title: str, detail: str
) -> None:
    response = problem(status, code, title, detail)
    if status == 413:
        response.headers["Connection"] = "close"

    async def no_body() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)
