"""Strict input types every package's schemas share: what a client may send, checked at the edge.

A hostile or sloppy value must be a 422 at the edge, never a 500 deeper down:
- PostgreSQL refuses NUL in text and JSON, and a lone surrogate cannot be encoded to UTF-8, so
  `SafeStr` refuses both (SQLite would store what PostgreSQL refuses: both must mean the same);
- `Instant` is RFC 3339 text with an offset only (a bare number is not a time: is it seconds or
  milliseconds?) inside a range where calendar arithmetic cannot overflow (`P1Y` after 9999-12-31);
- `JsonObject` is a free-form object (payloads, attributes, changes) whose strings, keys, numbers
  and nesting are checked recursively: no NaN or Infinity (not JSON), bounded depth and size;
- bounded ints for paths and queries (a 2**70 index must not reach the database);
- `EmailAddress` is one e-mail type for every schema, form and command, whose refusal is a fixed
  reason: email-validator's messages quote parts of the address, and an address is personal data;
- `QueryBool` is `true` or `false` in a query string, nothing else (not `yes`, `1` or `on`).

Validation errors are reported through `value_free_error`: the field and the reason, never the
value, and never a key the client made up (it is data too).

    >>> from pydantic import TypeAdapter
    >>> TypeAdapter(Instant).validate_python(1711533600)                 # doctest: +SKIP
    ValidationError: … an RFC 3339 timestamp with an offset …
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    StrictBool,
    StringConstraints,
    ValidationInfo,
)
from pydantic_core import ErrorDetails, PydanticCustomError

# Calendar arithmetic (offsets of years, alarms, deadlines) must stay far from datetime.max: the
# accepted instants and the longest period a policy may state are bounded together, so that the
# latest accepted instant plus the longest period (rolled over years of holidays) is a valid date.
MIN_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
MAX_PERIOD_YEARS = 100

MAX_JSON_DEPTH = 32
MAX_JSON_NODES = 10_000
MAX_JSON_STRING = 100_000
MAX_JSON_INT = 2**63 - 1

# PostgreSQL INTEGER and BIGINT columns; a larger path or query number is a 422.
MAX_INT32 = 2**31 - 1
MAX_INDEX = 2**62

# RFC 5321: a path is at most 256 octets; email-validator refuses past 254 characters anyway.
MAX_EMAIL = 320
INVALID_EMAIL = "not a valid e-mail address"

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def unsafe_text_reason(value: str) -> str | None:
    """Why `value` cannot be stored as text on every backend, or None."""
    if "\x00" in value:
        return "NUL characters are not allowed"
    if _SURROGATE.search(value) is not None:
        return "lone surrogate code points are not allowed"
    return None


def _safe_text(value: Any) -> Any:
    # Before the str schema, so its length constraints keep their own messages.
    if isinstance(value, str):
        reason = unsafe_text_reason(value)
        if reason is not None:
            raise ValueError(reason)
    return value


def _rfc3339_only(value: Any) -> Any:
    if isinstance(value, datetime):
        return value  # from Python callers (the CLI, services): already a datetime
    if isinstance(value, str) and _RFC3339.fullmatch(value) is not None:
        return value
    raise ValueError("an RFC 3339 timestamp with an offset, e.g. 2024-03-27T12:00:00+01:00")


def _in_range(value: datetime) -> datetime:
    if not MIN_INSTANT <= value < MAX_INSTANT:
        raise ValueError(
            f"a timestamp from {MIN_INSTANT.year} up to (not including) {MAX_INSTANT.year}"
        )
    return value


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why the JSON-like `value` is refused, or None. Iterative: a deep value cannot recurse."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            return f"more than {MAX_JSON_NODES} values"
        if isinstance(item, str):
            if len(item) > MAX_JSON_STRING:
                return f"a string longer than {MAX_JSON_STRING} characters"
            reason = unsafe_text_reason(item)
            if reason is not None:
                return reason
        elif isinstance(item, bool | date) or item is None:
            continue  # dates: YAML policy files have them
        elif isinstance(item, int):
            if abs(item) > MAX_JSON_INT:
                return "an integer out of the 64-bit range"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "NaN and Infinity are not JSON numbers"
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return "object keys must be strings"
                    stack.append((key, depth + 1))
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        else:
            return "not a JSON value"
    return None


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    reason = json_problem(value)
    if reason is not None:
        raise ValueError(reason)
    return value


SafeStr = Annotated[str, BeforeValidator(_safe_text)]
"""Text that every backend stores as sent: no NUL, no lone surrogate."""

Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_in_range)]
"""An aware RFC 3339 timestamp in [1900, 2200)."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
"""A free-form JSON object, checked recursively (strings, numbers, depth, size)."""


EMAIL_MEMO = "email_memo"
"""Validation-context key of an `EmailMemo` (`model_validate(x, context={EMAIL_MEMO: memo})`)."""


class EmailMemo(dict[str, str]):
    """Addresses already validated in one bulk run (address → normalised form).

    A subject's lines repeat their address, and email-validator is the dearest step of parsing
    a line; the memo belongs to one import run and goes with it (no process-wide cache of
    addresses), and it is bounded."""

    LIMIT = 50_000

    def remember(self, value: str, normalised: str) -> None:
        if len(self) >= self.LIMIT:
            self.clear()
        self[value] = normalised


def _email_address(value: str, info: ValidationInfo) -> str:
    memo = info.context.get(EMAIL_MEMO) if isinstance(info.context, dict) else None
    if memo is not None and value in memo:
        return str(memo[value])
    try:
        # check_deliverability: no DNS lookup at validation time (the code sent proves it).
        normalised = validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        # email-validator's own message quotes parts of the address: never pass it on.
        raise PydanticCustomError("email", INVALID_EMAIL) from None
    if isinstance(memo, EmailMemo):
        memo.remember(value, normalised)
    return normalised


EmailAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=MAX_EMAIL),
    AfterValidator(_email_address),
]
"""An e-mail address (email-validator, normalised: domain in lower case), or the fixed reason
`INVALID_EMAIL` that names nothing of what was sent."""


def _true_or_false(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    raise PydanticCustomError("bool_parsing", "Input should be true or false")


QueryBool = Annotated[StrictBool, BeforeValidator(_true_or_false)]
"""A boolean query parameter: `true` or `false` only."""


# A name we declared (a snake_case field, a list index) is safe to repeat; anything else came from
# the client: an undeclared field, a key of a free-form object (a "123456789" key is data too).
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
UNDECLARED = "(undeclared field)"
KEY = "(key)"

# Pydantic messages that quote the input (a character of a UUID): the fixed text instead.
_QUOTING = {"uuid_parsing": "Input should be a valid UUID"}


def _name(part: int | str) -> str:
    if isinstance(part, int) or _NAME.fullmatch(part):
        return str(part)
    return KEY


def value_free_error(err: ErrorDetails, *, skip: Sequence[str] = ()) -> tuple[str, str]:
    """The field (dotted; `skip` drops leading parts such as `body`) and the reason of a pydantic
    error, naming nothing the client chose.

    >>> value_free_error({"type": "extra_forbidden", "loc": ("subject", "ssn"),
    ...                   "msg": "Extra inputs are not permitted", "input": "x"})
    ('subject.(undeclared field)', 'Extra inputs are not permitted')
    """
    parts = list(err.get("loc", ()))
    while parts and parts[0] in skip:
        parts.pop(0)
    names = [_name(p) for p in parts]
    kind = err.get("type", "")
    if kind == "extra_forbidden" and names:
        names[-1] = UNDECLARED
    reason = _QUOTING.get(kind) or str(err.get("msg", "invalid"))
    if kind in ("too_long", "too_short") and isinstance(err.get("input"), str):
        # A length pydantic could not push into the str schema (`SafeStr | None`) is counted in
        # "items"; in text they are characters.
        ctx = err.get("ctx") or {}
        n = ctx.get("max_length" if kind == "too_long" else "min_length")
        bound = "at most" if kind == "too_long" else "at least"
        reason = f"String should have {bound} {n} character{'' if n == 1 else 's'}"
    return ".".join(names), reason
