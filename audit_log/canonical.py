"""Canonical JSON for audit entries: sorted keys, no whitespace, UTF-8, no floats.

The exact string is what is hashed, stored and served; two equal values give one string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from audit_log.errors import AuditDetailsError

FORMAT_VERSION = 1

# A plain safety net for the "ids only" rule: something shaped like an e-mail address is refused.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def check_value(value: Any, path: str = "details") -> None:
    """Raise AuditDetailsError unless `value` is JSON of str/int/bool/None/list/dict, no floats."""
    kind = type(value)
    if kind is str:
        if "@" in value and _EMAIL.search(value):
            raise AuditDetailsError(
                f"audit details must not contain personal data such as e-mail addresses ({path})"
            )
        return
    if value is None or kind is int or kind is bool:
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise AuditDetailsError(f"audit details keys must be strings ({path})")
            if type(item) is not int or item is True or item is False:
                check_value(item, f"{path}.{key}")
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        raise AuditDetailsError(f"audit details must not contain floats ({path}); use int or str")
    if isinstance(value, str):
        if "@" in value and _EMAIL.search(value):
            raise AuditDetailsError(
                f"audit details must not contain personal data such as e-mail addresses ({path})"
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditDetailsError(f"audit details keys must be strings ({path})")
            check_value(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_value(item, f"{path}[{i}]")
        return
    raise AuditDetailsError(f"audit details must be JSON values ({path} is {type(value).__name__})")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
encode_string: Any = json.encoder.encode_basestring


def dumps(value: Any) -> str:
    """The canonical JSON string of `value` (already checked)."""
    return _ENCODER.encode(value)


def is_canonical(body: str) -> bool:
    """True when `body` parses to a float-free value whose canonical form is `body` itself."""
    try:
        value = json.loads(body, parse_float=_no_float, parse_constant=_no_float)
    except (ValueError, TypeError):
        return False
    return dumps(value) == body


def _no_float(text: str) -> Any:
    raise ValueError("float in canonical JSON")
