"""Reading and erasing rows of a source database, as its mapping describes them.

Rows are read by keyset on the table's key (cost per batch stays flat however large the table);
a row's location in Lethe is its key as canonical JSON (`[42]`, `["a", 7]`). Erasure deletes or
masks rows in the source's own transaction, one statement per table and chunk; a statement that
fails is retried row by row so that one row something still refers to does not stop the others,
and each row's failure is reported by the error's class name (never a value). Masks are
idempotent: null and fixed values are the same the second time, and a keyed hash is never
applied to a value that already carries its prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    MetaData,
    Table,
    and_,
    any_,
    bindparam,
    delete,
    func,
    inspect,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.sql import ColumnElement, Select

from connectors.errors import SourceError
from connectors.mapping import HASH_PREFIX, ConnectorMapping, EraseAction, MaskWith, TableMapping
from records.errors import InvalidInputError

CHUNK = 500


def key_text(values: Sequence[Any]) -> str:
    """A row's location: its key values as canonical JSON."""
    return json.dumps([_plain(v) for v in values], separators=(",", ":"), ensure_ascii=False)


def parse_key(text: str) -> list[Any]:
    value = json.loads(text)
    if not isinstance(value, list):
        raise ValueError("a row key is a JSON list")
    return value


def parse_keys(texts: Sequence[str]) -> list[list[Any]]:
    """`parse_key` of each of `texts`, parsed as one JSON document (a purge batch has
    thousands); any text that is not one JSON list is parsed alone, so it fails as it would."""
    if not texts:
        return []
    try:
        values = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        values = None
    if (
        isinstance(values, list)
        and len(values) == len(texts)
        and all(isinstance(v, list) for v in values)
    ):
        return values
    return [parse_key(t) for t in texts]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError(f"a key column of type {type(value).__name__} is not supported")


def jsonable(value: Any) -> Any:
    """A column value as JSON (access packages)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return str(value)


def keyed_hash(key: bytes, value: Any) -> str:
    digest = hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


@dataclass(frozen=True)
class ExternalRow:
    """What Lethe keeps of a source row: its location and the fields that decide its due date."""

    key: str
    email: str | None
    external_id: str | None
    name: str | None
    collected_at: datetime | None
    outcome: str | None
    context: str | None


@dataclass(frozen=True)
class TableCheck:
    table: str
    exists: bool
    missing_columns: list[str]
    rows: int | None


class Source:
    """One source database seen through its mapping (tables reflected once, when first used)."""

    def __init__(
        self, mapping: ConnectorMapping, engine: Engine, *, hash_key: bytes | None = None
    ) -> None:
        self.mapping = mapping
        self.engine = engine
        self.hash_key = hash_key
        self._metadata = MetaData(schema=mapping.schema_)
        self._zone = ZoneInfo(mapping.timezone)
        # API threads, the scheduler and the purge share one Source: reflect once, under a lock.
        self._reflecting = threading.RLock()

    # --- reflection --------------------------------------------------------------------------

    def _table(self, name: str, connection: Connection | None = None) -> Table:
        key = f"{self.mapping.schema_}.{name}" if self.mapping.schema_ else name
        found = self._metadata.tables.get(key)
        if found is not None:
            return found
        with self._reflecting:
            return self._reflect(name, key, connection)

    def _reflect(self, name: str, key: str, connection: Connection | None) -> Table:
        found = self._metadata.tables.get(key)
        if found is not None:
            return found
        try:
            if connection is not None:
                return Table(name, self._metadata, autoload_with=connection)
            with self.engine.connect() as conn:
                return Table(name, self._metadata, autoload_with=conn)
        except NoSuchTableError as exc:
            raise SourceError(f"connector {self.mapping.name}: no table {name}") from exc
        except DBAPIError as exc:
            raise _source_error(self.mapping, exc) from exc

    def _column(self, table: TableMapping, ref: str) -> Column[Any]:
        owner, _, name = ref.rpartition(".")
        found: Column[Any] = self._table(owner or table.name).c[name]
        return found

    def _key_columns(self, table: TableMapping) -> list[Column[Any]]:
        base = self._table(table.name)
        return [base.c[k] for k in table.key]

    def _where_keys(self, table: TableMapping, keys: Sequence[str]) -> ColumnElement[bool]:
        columns = self._key_columns(table)
        values = parse_keys(keys)
        if len(columns) == 1:
            listed = [v[0] for v in values]
            if self.engine.dialect.name == "postgresql":
                # One array parameter, not one per row: the statement is the same for every
                # chunk (parsed once by the driver) and the server plans it once.
                array = bindparam(None, listed, type_=pg.ARRAY(columns[0].type))
                return columns[0] == any_(array)
            return columns[0].in_(listed)
        return or_(*(and_(*(c == x for c, x in zip(columns, v, strict=True))) for v in values))

    # --- checking ----------------------------------------------------------------------------

    def check(self) -> list[TableCheck]:
        """Every mapped table and column exists; how many rows each table has."""
        out: list[TableCheck] = []
        try:
            with self.engine.connect() as conn:
                inspector = inspect(conn)
                for table in self.mapping.tables:
                    wanted: dict[str, set[str]] = {table.name: set(table.key)}
                    for ref in table.column_refs():
                        owner, _, name = ref.rpartition(".")
                        wanted.setdefault(owner or table.name, set()).add(name)
                    for step in table.join:
                        wanted.setdefault(step.table, set()).update(step.match.values())
                    wanted[table.name] |= set(table.erasure.columns) | set(table.expose or ())
                    wanted[table.name] |= set(table.rectify.values())
                    missing: list[str] = []
                    exists = True
                    for owner, names in wanted.items():
                        if not inspector.has_table(owner, schema=self.mapping.schema_):
                            missing.append(f"{owner} (table)")
                            exists = exists and owner != table.name
                            continue
                        present = {
                            c["name"]
                            for c in inspector.get_columns(owner, schema=self.mapping.schema_)
                        }
                        missing += [f"{owner}.{n}" for n in sorted(names - present)]
                    rows = None
                    if exists:
                        base = self._table(table.name, conn)
                        rows = int(
                            conn.execute(select(func.count()).select_from(base)).scalar_one()
                        )
                    out.append(TableCheck(table.name, exists, missing, rows))
        except DBAPIError as exc:
            raise _source_error(self.mapping, exc) from exc
        return out

    # --- reading -----------------------------------------------------------------------------

    def _select_rows(self, table: TableMapping) -> Select[Any]:
        base = self._table(table.name)
        wanted = [c.label(f"k{i}") for i, c in enumerate(self._key_columns(table))]
        labels: dict[str, str | None] = {
            "email": table.subject.email,
            "external_id": table.subject.external_id,
            "name": table.subject.name,
            "collected_at": table.collected_at,
            "outcome": table.outcome,
            "context": table.context,
        }
        for label, ref in labels.items():
            if ref is not None:
                wanted.append(self._column(table, ref).label(label))
        joined: Any = base
        for step in table.join:
            target = self._table(step.table)
            condition = and_(
                *(
                    self._column(table, left) == target.c[right]
                    for left, right in step.match.items()
                )
            )
            joined = joined.join(target, condition)
        return select(*wanted).select_from(joined)

    def _moment(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            aware = value if value.tzinfo is not None else value.replace(tzinfo=self._zone)
            return aware.astimezone(UTC)
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=self._zone).astimezone(UTC)
        raise SourceError(f"connector {self.mapping.name}: collected_at is not a date or time")

    def _row(self, table: TableMapping, row: Any) -> ExternalRow:
        values = row._mapping
        n = len(table.key)

        def text(label: str) -> str | None:
            value = values.get(label)
            return None if value is None else str(value)

        return ExternalRow(
            key=key_text([values[f"k{i}"] for i in range(n)]),
            email=text("email"),
            external_id=text("external_id"),
            name=text("name"),
            collected_at=self._moment(values.get("collected_at")),
            outcome=table.outcome_value if table.outcome is None else text("outcome"),
            context=table.context_value if table.context is None else text("context"),
        )

    def iter_rows(
        self, table: TableMapping, *, batch_size: int | None = None
    ) -> Iterator[list[ExternalRow]]:
        """The table's rows in key order, `batch_size` at a time (keyset: no OFFSET)."""
        size = batch_size or self.mapping.batch_size
        last: list[Any] | None = None
        while True:
            stmt = self._select_rows(table)
            keys = self._key_columns(table)
            if last is not None:
                if len(keys) == 1:
                    stmt = stmt.where(keys[0] > last[0])
                else:
                    stmt = stmt.where(tuple_(*keys) > tuple_(*(literal(v) for v in last)))
            stmt = stmt.order_by(*keys).limit(size)
            try:
                with self.engine.connect() as conn:
                    rows = list(conn.execute(stmt).all())
            except DBAPIError as exc:
                raise _source_error(self.mapping, exc) from exc
            if not rows:
                return
            yield [self._row(table, r) for r in rows]
            last = [rows[-1]._mapping[f"k{i}"] for i in range(len(keys))]
            if len(rows) < size:
                return

    def read_live(self, table: TableMapping, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The rows at `keys` as they are now (exposed columns), by location."""
        if not keys:
            return {}
        base = self._table(table.name)
        names = table.expose or [c.name for c in base.columns]
        out: dict[str, dict[str, Any]] = {}
        try:
            with self.engine.connect() as conn:
                for start in range(0, len(keys), CHUNK):
                    chunk = keys[start : start + CHUNK]
                    stmt = select(
                        *(c.label(f"k{i}") for i, c in enumerate(self._key_columns(table))),
                        *(base.c[n] for n in names),
                    ).where(self._where_keys(table, chunk))
                    for row in conn.execute(stmt):
                        m = row._mapping
                        location = key_text([m[f"k{i}"] for i in range(len(table.key))])
                        out[location] = {n: jsonable(m[base.c[n]]) for n in names}
        except DBAPIError as exc:
            raise _source_error(self.mapping, exc) from exc
        return out

    # --- erasing -----------------------------------------------------------------------------

    def _statements(
        self, conn: Connection | None, table: TableMapping, keys: Sequence[str]
    ) -> list[Any]:
        base = self._table(table.name)
        where = self._where_keys(table, keys)
        if table.erasure.action is EraseAction.delete:
            return [delete(base).where(where)]
        fixed: dict[str, Any] = {}
        hashed: list[str] = []
        for name, mask in table.erasure.columns.items():
            if mask.with_ is MaskWith.null:
                fixed[name] = None
            elif mask.with_ is MaskWith.value:
                fixed[name] = mask.value
            else:
                hashed.append(name)
        out: list[Any] = []
        if fixed:
            out.append(update(base).where(where).values(**fixed))
        if hashed and conn is None:
            # Dry run: show the shape; the digest is computed from each row's value.
            out.append(
                update(base)
                .where(where)
                .values(**{n: literal(f"{HASH_PREFIX}hmac-sha256({n})") for n in hashed})
            )
        elif hashed:
            assert conn is not None
            if self.hash_key is None:
                raise SourceError(f"connector {self.mapping.name}: no hash_key for a hash mask")
            keys_cols = self._key_columns(table)
            rows = conn.execute(select(*keys_cols, *(base.c[n] for n in hashed)).where(where)).all()
            params: list[dict[str, Any]] = []
            for row in rows:
                values = {
                    n: keyed_hash(self.hash_key, row._mapping[base.c[n]])
                    for n in hashed
                    if row._mapping[base.c[n]] is not None
                    and not str(row._mapping[base.c[n]]).startswith(HASH_PREFIX)
                }
                if values:
                    # Same columns in every parameter set: keep a value that needs no change.
                    for n in hashed:
                        values.setdefault(n, row._mapping[base.c[n]])
                    params.append({**{f"b_{k.name}": row._mapping[k] for k in keys_cols}, **values})
            if params:
                stmt = (
                    update(base)
                    .where(and_(*(k == bindparam(f"b_{k.name}") for k in keys_cols)))
                    .values(**{n: bindparam(n) for n in hashed})
                )
                out.append((stmt, params))
        return out

    def _erase_in(self, conn: Connection, table: TableMapping, keys: Sequence[str]) -> int:
        touched = 0
        for statement in self._statements(conn, table, keys):
            if isinstance(statement, tuple):
                stmt, params = statement
                conn.execute(stmt, params)
                touched = max(touched, len(params))
            else:
                touched = max(touched, conn.execute(statement).rowcount or 0)
        return touched

    def erase(self, table: TableMapping, keys: Sequence[str]) -> dict[str, str | None]:
        """Delete or mask the rows at `keys`; per location None (done) or the error's class.

        A row already gone (deleted by a previous, interrupted attempt, or by the source) is
        done: what was asked for is true at the source.
        """
        results: dict[str, str | None] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = list(keys[start : start + CHUNK])
            try:
                with self.engine.begin() as conn:
                    self._erase_in(conn, table, chunk)
            except IntegrityError:
                # A row something still refers to: isolate it, erase the others.
                for key in chunk:
                    try:
                        with self.engine.begin() as conn:
                            self._erase_in(conn, table, [key])
                    except DBAPIError as exc:
                        results[key] = f"error:{type(exc.orig).__name__}"
                    except SQLAlchemyError as exc:
                        results[key] = f"error:{type(exc).__name__}"
                    else:
                        results[key] = None
            except DBAPIError as exc:
                results.update(dict.fromkeys(chunk, f"error:{type(exc.orig).__name__}"))
            except SourceError:
                results.update(dict.fromkeys(chunk, "error:SourceUnavailable"))
            except SQLAlchemyError as exc:
                results.update(dict.fromkeys(chunk, f"error:{type(exc).__name__}"))
            else:
                results.update(dict.fromkeys(chunk))
        return results

    def render_erase_sql(self, table: TableMapping, keys: Sequence[str]) -> list[str]:
        """The statements `erase` would run, with their values inline (a dry run shows them)."""
        if not keys:
            return []
        dialect = self.engine.dialect
        return [
            str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            for stmt in self._statements(None, table, keys)
        ]

    def rectify(self, table: TableMapping, key: str, changes: dict[str, Any]) -> int:
        """Write field-level changes to one row; the field names map to columns (`rectify`)."""
        base = self._table(table.name)
        values: dict[str, Any] = {}
        for field, value in changes.items():
            column = table.rectify.get(field, field)
            if column not in base.c or column in table.key:
                raise InvalidInputError(
                    f"connector {self.mapping.name}: table {table.name} has no field {field}"
                )
            values[column] = value
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(base).where(self._where_keys(table, [key])).values(**values)
                )
        except DBAPIError as exc:
            raise _source_error(self.mapping, exc) from exc
        return int(result.rowcount or 0)


def _source_error(mapping: ConnectorMapping, exc: DBAPIError) -> SourceError:
    return SourceError(f"connector {mapping.name}: {type(exc.orig).__name__} at the source")
