"""External records: rows of a source system governed where they live (connectors/).

`sync` indexes a connector's rows as personal records without copying their payload: the row's
location (connector, table, key), its subject (resolved by e-mail, one address one subject) and
the fields that decide its due date (`collected_at`, outcome, context). Due dates come from the
same `Evaluator` as every ingest, so policies, events, holds, purge runs, certificates and the
audit trail govern these records unchanged. A row changed at the source is re-decided; a row
gone from the source loses its index record (there is nothing left to govern), audited.

`ExternalActions` is what the purge and the data-subject rights use to act at the source:
erase (delete or mask) the rows of due records, read rows live for an access package, render
the SQL a dry run would run, rectify a row.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log import service as audit
from connectors.errors import (
    ConnectorNotFoundError,
    MappingError,
    SecretMissingError,
    SourceError,
)
from connectors.mapping import ConnectorMapping, EraseAction, TableMapping
from connectors.registry import Registry
from connectors.source import ExternalRow
from records import ids, memory
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work
from records.errors import DomainError, InvalidInputError
from records.models import RULE_RESTRICTION_GROUND, PersonalRecord, RecordStatus
from records.schemas import SubjectCreate
from retention import ingest
from retention.due import Evaluator

log = structlog.get_logger(__name__)

RECORDS_CHANGED = "retention.external.changed"
RECORDS_GONE = "retention.external.gone"
SYNC_COMPLETED = "retention.external.synced"


# --- sync --------------------------------------------------------------------------------------


@dataclass
class TableCounts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    skipped: int = 0


@dataclass
class SyncResult:
    connector: str
    tables: dict[str, TableCounts] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.tables.values())


def record_id(mapping: ConnectorMapping, table: str, *, rank: int | None = None) -> uuid.UUID:
    """A new id for a source row's record. Its first byte is the table's erasure rank, so that
    among records due at the same instant (the purge's keyset order is due date, then id) the
    rows that refer to others come first and a batch erases them before what they refer to; the
    rest is time-ordered (`records.ids`), so a purge batch reads and deletes index rows stored
    side by side, in the order the sync wrote them."""
    return ids.ranked(mapping.rank(table) if rank is None else rank)


def _fingerprint(keyring: Keyring, mapping: ConnectorMapping, table: TableMapping, row: Any) -> str:
    meta = {
        "connector": mapping.name,
        "table": table.name,
        "key": row.key,
        "policy": mapping.policy_of(table),
        "category": table.category,
        "subject": [records.normalise_email(row.email or ""), row.external_id],
        "collected_at": row.collected_at.astimezone(UTC).isoformat(),
        "outcome": row.outcome,
        "context": row.context,
        "source": table.source_value,
    }
    return keyring.payload_mac(records.canonical_json(meta))


def check_declared(evaluator: Evaluator, mapping: ConnectorMapping) -> None:
    """Art. 31(1)(c): every mapped table's category is one its processing record declares."""
    for table in mapping.tables:
        _, document = evaluator.policy(mapping.policy_of(table))
        if table.category not in {c.key for c in document.data_categories}:
            raise InvalidInputError(
                f"connector {mapping.name}, table {table.name}: category {table.category} is "
                f"not a data category of {document.reference}"
            )
        subject_category = mapping.subject_category_of(table)
        declared = {c.key for c in document.subject_categories}
        if subject_category is not None and subject_category not in declared:
            raise InvalidInputError(
                f"connector {mapping.name}, table {table.name}: subject category "
                f"{subject_category} is not one of {document.reference}"
            )


class _SyncState:
    def __init__(self, keyring: Keyring, now: datetime) -> None:
        self.keyring = keyring
        self.now = now
        self.subjects: dict[str, uuid.UUID] = {}

    def subject(self, session: Session, row: ExternalRow, actor: str) -> uuid.UUID | None:
        email = records.normalise_email(row.email or "")
        known = self.subjects.get(email)
        if known is not None:
            return known
        try:
            body = SubjectCreate(email=email, name=row.name, external_id=row.external_id)
            subject = ingest.resolve_subject(
                session, keyring=self.keyring, body=body, actor=actor, now=self.now
            ).subject
        except (ValidationError, DomainError):
            # Not an e-mail address, or an external id bound to another subject: the row is
            # reported as skipped (by count; the value is never logged).
            return None
        if len(self.subjects) > 50_000:
            self.subjects.clear()
        self.subjects[email] = subject.id
        return subject.id


def _sync_batch(
    session: Session,
    *,
    state: _SyncState,
    evaluator: Evaluator,
    mapping: ConnectorMapping,
    table: TableMapping,
    rows: list[ExternalRow],
    counts: TableCounts,
    actor: str,
) -> None:
    now = state.now
    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    existing = {
        r.external_key: r
        for r in session.execute(
            select(t.c.id, t.c.external_key, t.c.payload_hash, t.c.status).where(
                t.c.external_connector == mapping.name,
                t.c.external_table == table.name,
                records.one_of(session, t.c.external_key, [r.key for r in rows]),
            )
        ).all()
    }
    policy = mapping.policy_of(table)
    subject_category = mapping.subject_category_of(table)
    rank = mapping.rank(table.name)
    new_rows: list[dict[str, Any]] = []
    changed: list[uuid.UUID] = []
    due_updates: list[tuple[uuid.UUID, records.Due]] = []
    changed_fields: list[dict[str, Any]] = []
    for row in rows:
        if row.email is None or row.collected_at is None:
            counts.skipped += 1
            continue
        fingerprint = _fingerprint(state.keyring, mapping, table, row)
        stored = existing.get(row.key)
        if stored is not None and (
            stored.payload_hash == fingerprint or stored.status != RecordStatus.active.value
        ):
            # Unchanged, or no longer the source's to re-decide: handed over to another record,
            # under review, or a masked row kept as a tombstone.
            counts.unchanged += 1
            continue
        subject_id = state.subject(session, row, actor)
        if subject_id is None:
            counts.skipped += 1
            continue
        version, due = evaluator.decide_due(
            policy=policy,
            category=table.category,
            subject_category=subject_category,
            outcome=row.outcome,
            source=table.source_value,
            context=row.context,
            collected_at=row.collected_at,
        )
        fields = {
            "subject_id": subject_id,
            "policy_version": version,
            "context": row.context,
            "outcome": row.outcome,
            "collected_at": row.collected_at,
            "payload_hash": fingerprint,
            "updated_at": now,
        }
        if stored is not None:
            changed_fields.append({"b_id": stored.id, **fields})
            due_updates.append((stored.id, due))
            changed.append(stored.id)
            continue
        new_rows.append(
            {
                "id": record_id(mapping, table.name, rank=rank),
                "policy": policy,
                "category": table.category,
                "subject_category": subject_category,
                "source": table.source_value,
                "payload": None,
                "due_at": due.due_at,
                "rule_id": due.rule_id,
                "rule_version": due.rule_version,
                "action": due.action,
                "handover_to": due.handover_to,
                "status": RecordStatus.active.value,
                "restricted_at": now if due.restricted else None,
                "restriction_ground": RULE_RESTRICTION_GROUND if due.restricted else None,
                "created_at": now,
                "external_connector": mapping.name,
                "external_table": table.name,
                "external_key": row.key,
                **fields,
            }
        )
    if new_rows:
        records.bulk_insert(session, t, new_rows)
        audit.append(
            session,
            action=ingest.RECORD_INGESTED,
            actor=actor,
            now=now,
            target=f"connector:{mapping.name}",
            details={"table": table.name, "records": [str(r["id"]) for r in new_rows]},
        )
        counts.new += len(new_rows)
    if changed:
        # One executemany for the batch's changed rows, not one UPDATE per row.
        session.execute(
            update(t)
            .where(t.c.id == bindparam("b_id"))
            .values({k: bindparam(k) for k in changed_fields[0] if k != "b_id"}),
            changed_fields,
        )
        records.set_due_many(session, due_updates, now=now)
        audit.append(
            session,
            action=RECORDS_CHANGED,
            actor=actor,
            now=now,
            target=f"connector:{mapping.name}",
            details={"table": table.name, "records": [str(r) for r in changed]},
        )
        counts.changed += len(changed)


def _remove_gone(
    engine: Engine,
    *,
    mapping: ConnectorMapping,
    table: TableMapping,
    seen: set[str],
    counts: TableCounts,
    actor: str,
    now: datetime,
    batch_size: int,
) -> None:
    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    last: uuid.UUID | None = None
    while True:
        with unit_of_work(engine) as session:
            stmt = select(t.c.id, t.c.external_key).where(
                t.c.external_connector == mapping.name, t.c.external_table == table.name
            )
            if last is not None:
                stmt = stmt.where(t.c.id > last)
            rows = list(session.execute(stmt.order_by(t.c.id).limit(batch_size)).all())
            if not rows:
                return
            last = rows[-1].id
            gone = [r.id for r in rows if r.external_key not in seen]
            if gone:
                session.execute(delete(t).where(records.one_of(session, t.c.id, gone)))
                audit.append(
                    session,
                    action=RECORDS_GONE,
                    actor=actor,
                    now=now,
                    target=f"connector:{mapping.name}",
                    details={"table": table.name, "records": [str(r) for r in gone]},
                )
                counts.gone += len(gone)
        if len(rows) < batch_size:
            return


def sync(
    engine: Engine,
    *,
    registry: Registry,
    name: str,
    keyring: Keyring,
    actor: str,
    now: datetime,
    batch_size: int | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> SyncResult:
    """Index connector `name`'s rows, one Lethe transaction per source batch (a runner, like the
    import). Rerunning picks up rows added, changed and deleted at the source since."""
    mapping = registry.get(name)
    source = registry.source(name)
    with unit_of_work(engine, write=False) as session:
        check_declared(Evaluator(session, now=now), mapping)
    state = _SyncState(keyring, now)
    result = SyncResult(connector=name)
    size = batch_size or mapping.batch_size
    for table in mapping.tables:
        counts = result.tables.setdefault(table.name, TableCounts())
        seen: set[str] = set()
        for rows in source.iter_rows(table, batch_size=size):
            seen.update(r.key for r in rows)
            with memory.collector_paused(), unit_of_work(engine) as session:
                evaluator = Evaluator(session, now=now)
                _sync_batch(
                    session,
                    state=state,
                    evaluator=evaluator,
                    mapping=mapping,
                    table=table,
                    rows=rows,
                    counts=counts,
                    actor=actor,
                )
            if on_batch is not None:
                on_batch(table.name, len(rows))
        # Only after the whole table was read: a failed read never takes a row for gone.
        _remove_gone(
            engine,
            mapping=mapping,
            table=table,
            seen=seen,
            counts=counts,
            actor=actor,
            now=now,
            batch_size=size,
        )
    with unit_of_work(engine) as session:
        audit.append(
            session,
            action=SYNC_COMPLETED,
            actor=actor,
            now=now,
            target=f"connector:{name}",
            details={
                "tables": {
                    t: {"new": c.new, "changed": c.changed, "gone": c.gone, "skipped": c.skipped}
                    for t, c in result.tables.items()
                }
            },
        )
    log.info(
        "retention.external.synced",
        connector=name,
        new=result.total("new"),
        changed=result.total("changed"),
        gone=result.total("gone"),
    )
    return result


SYNC_JOB = "connectors.sync"


def sync_all(
    engine: Engine, *, registry: Registry, keyring: Keyring, actor: str, now: datetime
) -> dict[str, SyncResult | None]:
    """Sync every connector of the registry (the scheduled job): a source that fails is logged
    (by the error's class) and retried at the next run; it does not stop the others."""
    results: dict[str, SyncResult | None] = {}
    for name in registry.names():
        try:
            results[name] = sync(
                engine, registry=registry, name=name, keyring=keyring, actor=actor, now=now
            )
        except DomainError as exc:
            log.warning("retention.external.sync_failed", connector=name, error=exc.code)
            results[name] = None
    return results


# --- acting at the source ----------------------------------------------------------------------


def _location(row: Any) -> tuple[str, str, str] | None:
    connector = getattr(row, "external_connector", None)
    if connector is None:
        return None
    return str(connector), str(row.external_table), str(row.external_key)


def is_external(row: Any) -> bool:
    return _location(row) is not None


@dataclass(frozen=True)
class Erased:
    """Per record: None (done at the source) or why not; `masked`: rows kept, masked."""

    failures: dict[uuid.UUID, str]
    masked: set[uuid.UUID] = field(default_factory=set)


class ExternalActions:
    """Acting on external records through their connectors (wired by lethe from settings)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def _grouped(
        self, rows: Iterable[Any]
    ) -> tuple[dict[str, dict[str, list[Any]]], dict[uuid.UUID, str]]:
        by: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        unknown: dict[uuid.UUID, str] = {}
        # A purge batch has thousands of rows and a handful of tables: look each up once.
        groups: dict[tuple[str, str], list[Any] | str] = {}
        for row in rows:
            connector = row.external_connector
            if connector is None:
                continue
            where = (connector, row.external_table)
            group = groups.get(where)
            if group is None:
                group = groups[where] = self._table_group(where, by)
            if isinstance(group, str):
                unknown[row.id] = group
            else:
                group.append(row)
        return by, unknown

    def _table_group(
        self, where: tuple[str, str], by: dict[str, dict[str, list[Any]]]
    ) -> list[Any] | str:
        """The list collecting `where`'s rows, or why its rows cannot be acted on."""
        try:
            self.registry.get(where[0]).table(where[1])
        except (ConnectorNotFoundError, KeyError):
            return "error:connector-unknown"
        except MappingError:
            # A registry file that does not validate stops its sources, not the purge.
            return "error:mapping-invalid"
        group: list[Any] = []
        by[where[0]][where[1]] = group
        return group

    def masks(self, connector: str, table: str) -> bool:
        """Whether the rows of `table` are masked (kept, their record a tombstone), not deleted.
        An unknown table is not: its rows fail instead, and keep their record anyway."""
        try:
            return self.registry.get(connector).table(table).erasure.action is EraseAction.mask
        except (DomainError, KeyError):
            return False

    def erase(self, rows: Sequence[Any]) -> Erased:
        """Delete or mask the rows of `rows` at their sources, the tables that refer to others
        first. Idempotent: a row already erased counts as done."""
        grouped, failures = self._grouped(rows)
        masked: set[uuid.UUID] = set()
        for connector, tables in grouped.items():
            mapping = self.registry.get(connector)
            try:
                source = self.registry.source(connector)
            except SecretMissingError:
                for table_rows in tables.values():
                    failures.update(dict.fromkeys((r.id for r in table_rows), "error:secret"))
                continue
            for table_name in mapping.erase_order():
                table_rows = tables.get(table_name, [])
                if not table_rows:
                    continue
                table = mapping.table(table_name)
                keys = [str(r.external_key) for r in table_rows]
                results = source.erase(table, keys)
                masking = table.erasure.action is EraseAction.mask
                if all(results.get(k, "error:not-attempted") is None for k in keys):
                    # Every row done (the usual case): no per-row bookkeeping.
                    if masking:
                        masked.update(r.id for r in table_rows)
                    continue
                for r in table_rows:
                    error = results.get(str(r.external_key), "error:not-attempted")
                    if error is not None:
                        failures[r.id] = error
                    elif masking:
                        masked.add(r.id)
        if failures:
            log.warning("retention.external.erase_failed", records=len(failures))
        return Erased(failures=failures, masked=masked)

    def render_sql(self, rows: Sequence[Any]) -> list[str]:
        """The statements `erase` would run for `rows` (a dry run shows them; nothing runs)."""
        grouped, _ = self._grouped(rows)
        out: list[str] = []
        for connector, tables in grouped.items():
            mapping = self.registry.get(connector)
            source = self.registry.source(connector)
            for table_name in mapping.erase_order():
                keys = [str(r.external_key) for r in tables.get(table_name, [])]
                out += [
                    f"-- {connector}: {sql}"
                    for sql in source.render_erase_sql(mapping.table(table_name), keys)
                ]
        return out

    def read_live(self, rows: Sequence[Any]) -> dict[uuid.UUID, dict[str, Any] | None]:
        """The current rows at the source (None: the row is no longer there)."""
        grouped, unknown = self._grouped(rows)
        out: dict[uuid.UUID, dict[str, Any] | None] = dict.fromkeys(unknown)
        for connector, tables in grouped.items():
            source = self.registry.source(connector)
            mapping = self.registry.get(connector)
            for table_name, table_rows in tables.items():
                live = source.read_live(
                    mapping.table(table_name), [str(r.external_key) for r in table_rows]
                )
                for r in table_rows:
                    out[r.id] = live.get(str(r.external_key))
        return out

    def rectify(self, row: Any, changes: dict[str, Any]) -> int:
        where = _location(row)
        if where is None:
            raise InvalidInputError(f"record {row.id} is not an external record")
        connector, table, key = where
        mapping = self.registry.get(connector)
        return self.registry.source(connector).rectify(mapping.table(table), key, changes)


_table_of = attrgetter("external_connector", "external_table")


class PurgeErasure:
    """The purge's step for one batch's external records, at their sources.

    Entering sends the erase to the sources from a worker thread, so that Lethe's own work on the
    batch (deleting the index rows it expects to delete) runs meanwhile instead of after; a
    source round trip and a Lethe write then cost the batch the longer of the two, not their
    sum. `settle` waits for the sources and applies what they did to the plan: a row not erased
    there moves to `failed` (with the error's class in its note) and keeps its record, so the
    next run retries it and nothing is reported as done when it was not. Lethe commits nothing
    before `settle` returns: a crash in between leaves every record indexed, and the rerun's
    erase is idempotent.
    """

    def __init__(
        self,
        plan: dict[Any, list[Any]],
        *,
        deleted: Any,
        anonymised: Any,
        actions: ExternalActions | None,
    ) -> None:
        self.deleted = deleted
        self.anonymised = anonymised
        self.actions = actions
        self.targets = [
            r
            for o in (deleted, anonymised)
            for r in plan.get(o, [])
            if r.external_connector is not None
        ]
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[Erased] | None = None
        self._masked: set[uuid.UUID] = set()

    def __enter__(self) -> PurgeErasure:
        if self.targets and self.actions is not None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="lethe-erase")
            self._future = self._pool.submit(self.actions.erase, self.targets)
        return self

    def __exit__(self, *exc: object) -> None:
        # Never leave a source erase running behind a batch that failed in Lethe.
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def expected_deletions(self, rows: Sequence[Any]) -> list[uuid.UUID]:
        """The ids among `rows` whose records go once the sources erase them: Lethe's own
        records, and external ones whose rows are deleted (a masked row keeps its record)."""
        if self.actions is None:
            return [r.id for r in rows]
        tables = set(map(_table_of, rows))
        tables.discard((None, None))
        masking = {t for t in tables if self.actions.masks(*t)}
        if not masking:
            return [r.id for r in rows]
        return [r.id for r in rows if _table_of(r) not in masking]

    def _wait(self) -> Erased:
        if not self.targets:
            return Erased(failures={})
        if self._future is None:
            return Erased(dict.fromkeys((r.id for r in self.targets), "error:no-connectors"))
        try:
            return self._future.result()
        except DomainError:
            return Erased(dict.fromkeys((r.id for r in self.targets), "error:source"))

    def settle(
        self, plan: dict[Any, list[Any]], *, failed: Any, notes: dict[uuid.UUID, str]
    ) -> set[uuid.UUID]:
        """Wait for the sources and move the records they did not erase to `failed`; returns
        those records' ids. Nothing is written to Lethe here."""
        erased = self._wait()
        self._masked = erased.masked
        moved: set[uuid.UUID] = set()
        if erased.failures:
            for outcome in (self.deleted, self.anonymised):
                kept = []
                for r in plan.get(outcome, []):
                    error = erased.failures.get(r.id)
                    if error is None:
                        kept.append(r)
                    else:
                        notes[r.id] = error[:400]
                        moved.add(r.id)
                        plan.setdefault(failed, []).append(r)
                plan[outcome] = kept
        return moved

    def keep_tombstones(
        self, session: Session, plan: dict[Any, list[Any]], *, now: datetime
    ) -> set[uuid.UUID]:
        """After `settle`: the deleted records whose rows the sources masked stay, anonymised
        (masked rows stay at the source; their record stops the next sync from indexing them
        again). Returns their ids."""
        tombstones = {r.id for r in plan.get(self.deleted, []) if r.id in self._masked}
        if tombstones:
            t = PersonalRecord.__table__  # type: ignore[attr-defined]
            session.execute(
                update(t)
                .where(records.one_of(session, t.c.id, tombstones))
                .values(status=RecordStatus.anonymised.value, due_at=None, updated_at=now)
            )
        return tombstones


def dry_run_sql(
    session: Session, *, record_ids: Sequence[uuid.UUID], actions: ExternalActions
) -> list[str]:
    """The SQL a real run would send to the sources for these (planned) records."""
    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    rows: list[Any] = []
    ids = list(record_ids)
    for start in range(0, len(ids), 1000):
        rows += session.execute(
            select(t.c.id, t.c.external_connector, t.c.external_table, t.c.external_key).where(
                t.c.id.in_(ids[start : start + 1000]), t.c.external_connector.is_not(None)
            )
        ).all()
    return actions.render_sql(rows)


def external_records_of(session: Session, subject_id: uuid.UUID) -> list[PersonalRecord]:
    return list(
        session.scalars(
            select(PersonalRecord).where(
                col(PersonalRecord.subject_id) == subject_id,
                col(PersonalRecord.external_connector).is_not(None),
            )
        )
    )


# --- data-subject rights (dsr reads and acts live through these) -------------------------------

UNAVAILABLE = "the source system could not be read now; ask again later"


def live_data(
    actions: ExternalActions | None, rows: Sequence[Any]
) -> tuple[dict[uuid.UUID, dict[str, Any] | None], set[uuid.UUID]]:
    """The external rows among `rows`, read live: (data by record id, ids that could not be
    read). A row gone from the source reads as None (until the next sync drops its record)."""
    wanted = [r for r in rows if is_external(r)]
    if not wanted:
        return {}, set()
    if actions is None:
        return {}, {r.id for r in wanted}
    try:
        return actions.read_live(wanted), set()
    except DomainError:
        return {}, {r.id for r in wanted}


def live_fields(actions: ExternalActions | None, record: Any) -> dict[str, Any] | None:
    """One external record's fields as they are at the source, its key columns left out (a key
    is the row's location, not a field to rectify); None when unreadable or gone."""
    data, failed = live_data(actions, [record])
    row = data.get(record.id)
    if record.id in failed or row is None or actions is None:
        return None
    mapping = actions.registry.get(str(record.external_connector))
    keys = set(mapping.table(str(record.external_table)).key)
    return {k: v for k, v in row.items() if k not in keys}


def rectify(actions: ExternalActions | None, record: Any, changes: dict[str, Any]) -> None:
    """Write a rectification to the row at the source (field-level, audited by the caller)."""
    if actions is None:
        raise SourceError("no connectors are configured to reach the source system")
    actions.rectify(record, changes)


def erase_for_subject(
    session: Session,
    *,
    actions: ExternalActions | None,
    record_ids: Sequence[uuid.UUID],
) -> tuple[list[uuid.UUID], list[dict[str, Any]]]:
    """An erasure request's step at the sources: erase the external rows among `record_ids`
    there first. Returns (the ids Lethe may now delete, the records kept with the reason): a
    row the source did not erase keeps its record, and the answer says so."""
    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    ids = list(record_ids)
    rows: list[Any] = []
    for start in range(0, len(ids), 1000):
        rows += session.execute(
            select(t.c.id, t.c.external_connector, t.c.external_table, t.c.external_key).where(
                t.c.id.in_(ids[start : start + 1000]), t.c.external_connector.is_not(None)
            )
        ).all()
    if not rows:
        return ids, []
    if actions is None:
        failures = dict.fromkeys((r.id for r in rows), "error:no-connectors")
    else:
        try:
            failures = actions.erase(rows).failures
        except DomainError:
            failures = dict.fromkeys((r.id for r in rows), "error:source")
    kept = [
        {"record_id": str(rid), "reasons": [f"source system: not erased yet ({error})"]}
        for rid, error in sorted(failures.items(), key=lambda kv: str(kv[0]))
    ]
    return [i for i in ids if i not in failures], kept
