"""Connector mappings (`lethe.connector/1`): a source database described in YAML, validated.

A column is named `column` (on the table itself) or `table.column` (on a table reached through
the table's `join` chain). Every problem is reported as `file, line N, field a.b.c: reason`.

    >>> parse_mapping("format: lethe.connector/1\\nname: x", source="x.yaml")  # doctest: +SKIP
    MappingError: x.yaml, line 1, field url: Field required; …
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.errors import MappingError
from policies.yamlfile import compose, located, raise_located, reason_of
from policies.yamlfile import line_of as line_of_node

FORMAT = "lethe.connector/1"
_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Prefix of a keyed-hash mask: a value already masked is never hashed again (idempotent purge).
HASH_PREFIX = "lethe-hmac:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ident(value: str) -> str:
    if not _IDENT.fullmatch(value):
        raise ValueError("not a plain SQL identifier (letters, digits, _)")
    return value


def _column_ref(value: str) -> str:
    parts = value.split(".")
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ValueError("a column is `column` or `table.column` (plain identifiers)")
    return value


class Join(_Strict):
    """One step of a join chain: `table` joined where `{left column: column of table}` match
    (`match`, not `on`: YAML 1.1 reads a bare `on` as the boolean true)."""

    table: str
    match: dict[str, str] = Field(min_length=1)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        return _ident(value)

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, str]) -> dict[str, str]:
        for left, right in value.items():
            _column_ref(left)
            _ident(right)
        return value


class SubjectColumns(_Strict):
    """Where the subject is read: a Lethe subject is reached by e-mail (one address, one
    subject); an external id and a name are filled in when the source has them."""

    email: str
    external_id: str | None = None
    name: str | None = None

    @field_validator("email", "external_id", "name")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else _column_ref(value)


class EraseAction(enum.StrEnum):
    delete = "delete"
    mask = "mask"


class MaskWith(enum.StrEnum):
    null = "null"
    value = "value"
    hash = "hash"


class Mask(_Strict):
    """`null`, a fixed `value`, or a keyed `hash` (HMAC-SHA-256 under the connector's hash key:
    the same input masks to the same output, so the source's own joins and counts still work)."""

    with_: MaskWith = Field(alias="with")
    value: str | int | None = None

    @model_validator(mode="after")
    def _value(self) -> Mask:
        if self.with_ is MaskWith.value and self.value is None:
            raise ValueError("`with: value` needs a `value`")
        if self.with_ is not MaskWith.value and self.value is not None:
            raise ValueError("only `with: value` takes a `value`")
        return self


class Erasure(_Strict):
    action: EraseAction
    # column → mask (mask only). Columns not listed are left as they are.
    columns: dict[str, Mask] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, Mask]) -> dict[str, Mask]:
        for name in value:
            _ident(name)
        return value

    @model_validator(mode="after")
    def _shape(self) -> Erasure:
        if self.action is EraseAction.mask and not self.columns:
            raise ValueError("`action: mask` lists the `columns` to mask")
        if self.action is EraseAction.delete and self.columns:
            raise ValueError("`action: delete` takes no `columns`")
        return self


class TableMapping(_Strict):
    name: str
    key: list[str] = Field(min_length=1, max_length=4)
    # The processing record and data category this table's rows hold.
    policy: str | None = None
    category: str
    subject_category: str | None = None
    join: list[Join] = Field(default_factory=list, max_length=4)
    subject: SubjectColumns
    collected_at: str
    # `outcome` / `context` / `source`: a column, or a fixed `*_value`.
    outcome: str | None = None
    outcome_value: str | None = None
    context: str | None = None
    context_value: str | None = None
    source_value: str | None = None
    # Tables this one refers to by foreign key (besides its first join): deleted after it.
    references: list[str] = Field(default_factory=list)
    # Columns shown in an access package (default: every column of the table).
    expose: list[str] | None = None
    # Rectification: field name → column (default: a field names its column).
    rectify: dict[str, str] = Field(default_factory=dict)
    erasure: Erasure

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _ident(value)

    @field_validator("key", "references")
    @classmethod
    def _idents(cls, value: list[str]) -> list[str]:
        return [_ident(v) for v in value]

    @field_validator("collected_at", "outcome", "context")
    @classmethod
    def _refs(cls, value: str | None) -> str | None:
        return None if value is None else _column_ref(value)

    @model_validator(mode="after")
    def _one_of(self) -> TableMapping:
        if self.outcome is not None and self.outcome_value is not None:
            raise ValueError("give `outcome` (a column) or `outcome_value`, not both")
        if self.context is not None and self.context_value is not None:
            raise ValueError("give `context` (a column) or `context_value`, not both")
        joined = {j.table for j in self.join}
        for ref in self.column_refs():
            table, _, _ = ref.rpartition(".")
            if table and table != self.name and table not in joined:
                raise ValueError(f"`{ref}` names table {table}, which is not in `join`")
        if self.erasure.action is EraseAction.mask:
            keys = set(self.key) & set(self.erasure.columns)
            if keys:
                raise ValueError(f"a key column cannot be masked: {sorted(keys)[0]}")
        return self

    def column_refs(self) -> list[str]:
        refs = [self.subject.email, self.collected_at]
        refs += [r for r in (self.subject.external_id, self.subject.name) if r]
        refs += [r for r in (self.outcome, self.context) if r]
        for step in self.join:
            refs += list(step.match)
        return refs


class ConnectorMapping(_Strict):
    format: Literal["lethe.connector/1"]
    name: str = Field(pattern=_NAME)
    title: str | None = None
    # SQLAlchemy URL without a password: the password comes from the secrets.
    url: str
    schema_: str | None = Field(default=None, alias="schema")
    policy: str
    subject_category: str | None = None
    # Naive datetimes of the source are read in this zone.
    timezone: str = "UTC"
    batch_size: int = Field(default=1000, ge=1, le=50_000)
    tables: list[TableMapping] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError("not a SQLAlchemy URL (dialect+driver://user@host/db)") from exc
        if url.password:
            raise ValueError(
                "the URL carries a password: put it in the secrets (LETHE_CONNECTOR_SECRETS_FILE"
                " or LETHE_CONNECTOR_<NAME>_PASSWORD), never in the mapping"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("not an IANA time zone") from exc
        return value

    @model_validator(mode="after")
    def _tables(self) -> ConnectorMapping:
        names = [t.name for t in self.tables]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"table {name} is mapped twice")
        for table in self.tables:
            for ref in table.references:
                if ref not in names:
                    raise ValueError(f"table {table.name} references {ref}, which is not mapped")
        self.erase_order()  # refuses a cycle
        return self

    def table(self, name: str) -> TableMapping:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def policy_of(self, table: TableMapping) -> str:
        return table.policy or self.policy

    def subject_category_of(self, table: TableMapping) -> str | None:
        return table.subject_category or self.subject_category

    def parents(self, table: TableMapping) -> set[str]:
        mapped = {t.name for t in self.tables}
        found = set(table.references)
        if table.join and table.join[0].table in mapped:
            found.add(table.join[0].table)
        return found - {table.name}

    def erase_order(self) -> list[str]:
        """Mapped tables, those that refer to others first: the order that keeps foreign keys."""
        depth: dict[str, int] = {}

        def of(name: str, seen: tuple[str, ...]) -> int:
            if name in seen:
                raise ValueError(f"tables refer to each other in a cycle: {' > '.join(seen)}")
            if name not in depth:
                parents = self.parents(self.table(name))
                depth[name] = 1 + max((of(p, (*seen, name)) for p in parents), default=-1)
            return depth[name]

        for table in self.tables:
            of(table.name, ())
        return sorted(depth, key=lambda n: (-depth[n], n))

    def rank(self, name: str) -> int:
        """0 for the table erased first."""
        return self.erase_order().index(name)

    @property
    def uses_hash(self) -> bool:
        return any(
            m.with_ is MaskWith.hash for t in self.tables for m in t.erasure.columns.values()
        )


# --- parsing with located errors -----------------------------------------------------------


def _table_names(data: dict[str, Any]) -> list[str]:
    tables = data.get("tables")
    if not isinstance(tables, list):
        return []
    return [str(t.get("name")) if isinstance(t, dict) else "" for t in tables]


def parse_mapping(text: str, *, source: str = "<mapping>") -> ConnectorMapping:
    """Parse and validate one mapping file's text; `MappingError` with located errors."""
    root, data = compose(text, source=source, error=MappingError, kind="a mapping file")
    try:
        return ConnectorMapping.model_validate(data)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        names = _table_names(data)
        for err in exc.errors(include_input=False, include_url=False):
            loc = [p for p in err.get("loc", ()) if isinstance(p, str | int)]
            reason = reason_of(str(err.get("msg", "invalid")))
            if not loc:
                # A cross-table check: point at the table it names, when it names one.
                for i, name in enumerate(names):
                    if re.search(rf"\b(table|references) {re.escape(name)}\b", reason):
                        loc = ["tables", i]
                        break
            field = ".".join(str(p) for p in loc)
            errors.append(located(source, line_of_node(root, loc), field, reason))
        raise_located(MappingError, errors)


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the node at `loc` in a mapping file's text (or its nearest parent)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    return line_of_node(root, loc)


def read_mapping(path: Path) -> ConnectorMapping:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"{path.name}: cannot read the file as UTF-8 text") from exc
    return parse_mapping(text, source=path.name)
