"""Reading policy files: YAML with a safe loader, validated by `PolicyDocument`, errors located.

Every problem is reported as `file, line N, field a.b.c: reason`, so the person editing the file
can go straight to it. Duplicate keys are refused (plain YAML would keep the last one silently).

    >>> parse_policy("reference: X", source="bad.yaml")                   # doctest: +SKIP
    PolicyFileError: bad.yaml, line 1, field reference: String should match pattern …
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.document import CROSS_REFERENCE_SEPARATOR, PolicyDocument
from policies.errors import PolicyFileError
from policies.yamlfile import compose, line_of, located, raise_located, reason_of


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


def parse_policy(text: str, *, source: str = "<policy>") -> ParsedPolicy:
    """Parse and validate one policy file's text; raise `PolicyFileError` with located errors."""
    root, data = compose(text, source=source, error=PolicyFileError, kind="a policy file")
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = [p for p in err.get("loc", ()) if isinstance(p, str | int)]
            reason = reason_of(str(err.get("msg", "invalid")))
            if not loc and reason.startswith("@"):
                for part in reason.split(CROSS_REFERENCE_SEPARATOR):
                    path, _, why = part.strip().lstrip("@").partition(": ")
                    sub = [int(p) if p.isdigit() else p for p in path.split(".") if p]
                    errors.append(located(source, line_of(root, sub), path, why))
                continue
            field = ".".join(str(p) for p in loc)
            errors.append(located(source, line_of(root, loc), field, reason))
        raise_located(PolicyFileError, errors)
    return ParsedPolicy(document=document, source_text=text, source_name=source)


def read_policy_file(path: Path) -> ParsedPolicy:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyFileError(f"{path.name}: cannot read the file ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise_located(PolicyFileError, [located(path.name, None, "", "not UTF-8 text")])
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
