"""Reading a hand-edited YAML file with its limits, and reporting its problems where they are.

Shared by policy files (`policies.loader`) and connector mappings (`connectors.mapping`): the
text is composed once with the hostile-input limits (size, nesting depth, no aliases, nothing
that cannot be stored or exported as JSON: NUL, lone surrogates, NaN), duplicate keys are found
(plain YAML would keep the last one silently), and each problem is located as
`file, line N, field a.b.c: reason`, so the person editing the file can go straight to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import yaml

from records.errors import InvalidInputError
from records.types import json_problem

MAX_BYTES = 1_000_000
# A policy or mapping file nests a handful of levels; the composer recurses once per level.
MAX_DEPTH = 32
# Errors shown in the message; the `errors` list carries them all.
SHOWN = 5


def located(source: str, line: int | None, field: str, reason: str) -> dict[str, Any]:
    """One problem: `{file, line, field, reason}` (`field` "(document)" for the whole file)."""
    return {"file": source, "line": line, "field": field or "(document)", "reason": reason}


def raise_located(error: type[InvalidInputError], errors: Sequence[dict[str, Any]]) -> NoReturn:
    """Raise `error` with the first problems in its message and all of them in `errors=`."""

    def one(e: dict[str, Any]) -> str:
        where = f"{e['file']}, line {e['line']}" if e["line"] else e["file"]
        return f"{where}, field {e['field']}: {e['reason']}"

    shown = "; ".join(one(e) for e in errors[:SHOWN])
    more = f" (and {len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
    raise error(shown + more, errors=list(errors))


def reason_of(message: str) -> str:
    """A pydantic message without its `Value error, ` / `Assertion failed, ` prefix."""
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def duplicate_keys(node: yaml.Node, source: str, path: str = "") -> list[dict[str, Any]]:
    """Every key given twice in the same mapping, located at its second occurrence."""
    found: list[dict[str, Any]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = f"{path}.{key}" if path else key
            if key in seen:
                found.append(located(source, key_node.start_mark.line + 1, here, "duplicate key"))
            seen.add(key)
            found += duplicate_keys(value_node, source, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += duplicate_keys(item, source, f"{path}.{i}" if path else str(i))
    return found


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the node at `loc` (a pydantic error location), or of its nearest
    existing parent; None without a document."""
    if root is None:
        return None
    node: yaml.Node = root
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if str(k.value) == str(part)), None)
        elif isinstance(node, yaml.SequenceNode):
            try:
                index = int(part)
            except ValueError:
                index = -1
            nxt = node.value[index] if 0 <= index < len(node.value) else None
        if nxt is None:
            break
        node = nxt
    return int(node.start_mark.line) + 1


def compose(
    text: str,
    *,
    source: str,
    error: type[InvalidInputError],
    kind: str,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> tuple[yaml.Node, dict[str, Any]]:
    """The node tree and the data of a YAML mapping, within the limits; raise `error` with
    located problems otherwise (`kind`, e.g. "a policy file", names the file in the message).

    Refused: more than `max_bytes`, aliases (an alias can expand exponentially when validated:
    "billion laughs"), nesting deeper than `max_depth` (checked on the event stream, before the
    recursive composer runs), invalid YAML, a document that is not a mapping, values that
    cannot be stored as JSON (escapes such as `"\\0"` or `"\\ud800"`, `.nan`), duplicate keys.
    """
    if len(text.encode("utf-8")) > max_bytes:
        raise_located(error, [located(source, None, "", f"file larger than {max_bytes} bytes")])
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.AliasEvent):
                reason = "YAML aliases (*name) are not allowed"
                raise_located(error, [located(source, line, "", reason)])
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    reason = f"nested deeper than {max_depth} levels"
                    raise_located(error, [located(source, line, "", reason)])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = f"not valid YAML: {exc.problem or 'syntax error'}"
        raise_located(error, [located(source, line, "", reason)])
    except yaml.YAMLError:
        raise_located(error, [located(source, None, "", "not valid YAML")])
    if root is None or not isinstance(data, dict):
        raise_located(error, [located(source, 1, "", f"{kind} is a YAML mapping (key: value)")])
    unsafe = json_problem(data, max_depth=max_depth)
    if unsafe is not None:
        raise_located(error, [located(source, None, "", unsafe)])
    duplicates = duplicate_keys(root, source)
    if duplicates:
        raise_located(error, duplicates)
    return root, data
