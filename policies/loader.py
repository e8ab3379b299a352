"""Reading policy files: YAML with a safe loader, validated by `PolicyDocument`, errors located.

Every problem is reported as `file, line N, field a.b.c: reason`, so the person editing the file
can go straight to it. Duplicate keys are refused (plain YAML would keep the last one silently).

    >>> parse_policy("reference: X", source="bad.yaml")                   # doctest: +SKIP
    PolicyFileError: bad.yaml, line 1, field reference: String should match pattern …
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from policies.document import CROSS_REFERENCE_SEPARATOR, PolicyDocument
from policies.errors import PolicyFileError
from records.types import json_problem

MAX_BYTES = 1_000_000
# A policy file nests a handful of levels; the composer recurses once per level.
MAX_DEPTH = 32


@dataclass(frozen=True)
class ParsedPolicy:
    document: PolicyDocument
    source_text: str
    source_name: str

    @property
    def content_hash(self) -> str:
        return content_hash(self.document)


def canonical_json(document: PolicyDocument) -> str:
    return json.dumps(
        document.canonical_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def content_hash(document: PolicyDocument) -> str:
    """SHA-256 of the document's canonical JSON: comments and layout do not change it."""
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def _located(source: str, line: int | None, field: str, reason: str) -> dict[str, Any]:
    return {"file": source, "line": line, "field": field or "(document)", "reason": reason}


def _raise(errors: Sequence[dict[str, Any]]) -> NoReturn:
    def one(e: dict[str, Any]) -> str:
        where = f"{e['file']}, line {e['line']}" if e["line"] else e["file"]
        return f"{where}, field {e['field']}: {e['reason']}"

    shown = "; ".join(one(e) for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    raise PolicyFileError(shown + more, errors=list(errors))


def _check_duplicates(node: yaml.Node, source: str, path: str = "") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = f"{path}.{key}" if path else key
            if key in seen:
                found.append(_located(source, key_node.start_mark.line + 1, here, "duplicate key"))
            seen.add(key)
            found += _check_duplicates(value_node, source, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _check_duplicates(item, source, f"{path}.{i}" if path else str(i))
    return found


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the node at `loc`, or of its nearest existing parent."""
    if root is None:
        return None
    node: yaml.Node = root
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if str(key_node.value) == str(part):
                    nxt = value_node
                    break
        elif isinstance(node, yaml.SequenceNode):
            try:
                nxt = node.value[int(part)]
            except (ValueError, IndexError):
                nxt = None
        if nxt is None:
            break
        node = nxt
    return int(node.start_mark.line) + 1


def _reason(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def parse_policy(text: str, *, source: str = "<policy>") -> ParsedPolicy:
    """Parse and validate one policy file's text; raise `PolicyFileError` with located errors."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        _raise([_located(source, None, "", f"file larger than {MAX_BYTES} bytes")])
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.AliasEvent):
                # An alias can expand exponentially when validated ("billion laughs").
                _raise([_located(source, line, "", "YAML aliases (*name) are not allowed")])
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    _raise([_located(source, line, "", f"nested deeper than {MAX_DEPTH} levels")])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        _raise([_located(source, line, "", f"not valid YAML: {exc.problem or 'syntax error'}")])
    except yaml.YAMLError:
        _raise([_located(source, None, "", "not valid YAML")])
    if root is None or not isinstance(data, dict):
        _raise([_located(source, 1, "", "a policy file is a YAML mapping (key: value)")])
    # Escapes (`"\0"`, `"\ud800"`) and `.nan` reach what is stored and exported as JSON.
    unsafe = json_problem(data, max_depth=MAX_DEPTH)
    if unsafe is not None:
        _raise([_located(source, None, "", unsafe)])
    duplicates = _check_duplicates(root, source)
    if duplicates:
        _raise(duplicates)
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = [p for p in err.get("loc", ()) if isinstance(p, str | int)]
            reason = _reason(str(err.get("msg", "invalid")))
            if not loc and reason.startswith("@"):
                for part in reason.split(CROSS_REFERENCE_SEPARATOR):
                    path, _, why = part.strip().lstrip("@").partition(": ")
                    sub = [int(p) if p.isdigit() else p for p in path.split(".") if p]
                    errors.append(_located(source, _line_of(root, sub), path, why))
                continue
            field = ".".join(str(p) for p in loc)
            errors.append(_located(source, _line_of(root, loc), field, reason))
        _raise(errors)
    return ParsedPolicy(document=document, source_text=text, source_name=source)


def read_policy_file(path: Path) -> ParsedPolicy:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyFileError(f"{path.name}: cannot read the file ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        _raise([_located(path.name, None, "", "not UTF-8 text")])
    return parse_policy(text, source=path.name)


def policy_files(path: Path) -> list[Path]:
    """`path` itself, or the `*.yaml` / `*.yml` files in it, sorted."""
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if not path.exists():
        raise PolicyFileError(f"{path.name}: no such file or directory")
    return [path]


def registry_dir() -> Path:
    """The shipped registry (`policies/registry/`)."""
    return Path(__file__).resolve().parent / "registry"
