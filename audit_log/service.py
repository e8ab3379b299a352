"""Appending to the audit trail, in the caller's transaction.

`append` allocates the next dense index under a writer lock (SQLite: the transaction is begun
`IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), so concurrent writers serialise
and a rolled-back transaction leaves no gap. It never hashes more than its own leaf: tree heads
are computed at checkpoint time from stored subtrees (see `audit_log.tree`).

Rows are written with one multi-row INSERT, not one statement per entry: `append` queues the
row on the session and the queue is written, in the same transaction, before the commit,
before any ORM statement the session executes (so queries see the entries), and before a
savepoint begins (so the savepoint cannot take earlier entries with it); a rollback drops it.
"""

from __future__ import annotations

import hashlib
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, SessionTransaction
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from audit_log import canonical
from audit_log.errors import AuditDetailsError
from audit_log.models import AuditEntry
from records.db import begin_write

# Key of PostgreSQL's transaction advisory lock that serialises audit writers ("LETHEAUD").
ADVISORY_LOCK_KEY = 0x4C45544845415544
_NEXT = "lethe_audit_next_index"
_PENDING = "lethe_audit_pending_rows"
_TABLE = AuditEntry.__table__  # type: ignore[attr-defined]
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 ‖ data)."""
    return _sha256(b"\x00" + data).digest()


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and a `Z`: `2026-03-27T11:00:00.000000Z`."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditDetailsError("audit time must be an aware datetime")
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def entry_body(
    *,
    index: int,
    action: str,
    actor: str,
    now: datetime,
    subject_id: uuid.UUID | None,
    target: str | None,
    details: Mapping[str, Any] | None,
) -> str:
    """The canonical JSON body of one entry (format version `canonical.FORMAT_VERSION`)."""
    if not action or not actor:
        raise AuditDetailsError("an audit entry needs an action and an actor")
    for name, given in (("action", action), ("actor", actor), ("target", target)):
        canonical.check_value(given, name)
    value: dict[str, Any] = {
        "v": canonical.FORMAT_VERSION,
        "index": index,
        "at": format_time(now),
        "action": action,
        "actor": actor,
        "subject": str(subject_id) if subject_id is not None else None,
        "target": target,
        "details": dict(details) if details is not None else {},
    }
    canonical.check_value(value["details"])
    return canonical.dumps(value)


def lock_writer(session: Session) -> None:
    """Serialise with every other audit writer until this transaction ends."""
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})


def _current_transaction(session: Session) -> SessionTransaction | None:
    # The innermost transaction: a rolled-back savepoint must not leave a cached index behind.
    return session.get_nested_transaction() or session.get_transaction()


def _next_index(session: Session) -> int:
    """The next free index, taking the writer lock on first use in this transaction."""
    transaction = _current_transaction(session)
    cached = session.info.get(_NEXT)
    if transaction is not None and cached is not None and cached[0]() is transaction:
        return int(cached[1])
    lock_writer(session)
    last = session.execute(select(func.max(AuditEntry.idx))).scalar_one_or_none()
    return 0 if last is None else int(last) + 1


def append(
    session: Session,
    *,
    action: str,
    actor: str,
    now: datetime,
    subject_id: uuid.UUID | None = None,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry to the caller's transaction and return it (written before the commit)."""
    index = _next_index(session)
    body = entry_body(
        index=index,
        action=action,
        actor=actor,
        now=now,
        subject_id=subject_id,
        target=target,
        details=details,
    )
    row: dict[str, Any] = {
        "idx": index,
        "created_at": now,
        "action": action,
        "actor": actor,
        "subject_id": subject_id,
        "target": target,
        "body": body,
        "leaf_hash": _sha256(b"\x00" + body.encode()).digest(),
    }
    session.info.setdefault(_PENDING, []).append(row)
    transaction = _current_transaction(session)
    if transaction is not None:
        session.info[_NEXT] = (weakref.ref(transaction), index + 1)
    return AuditEntry.model_construct(**row)


def flush_pending(session: OrmSession, connection: Connection | None = None) -> None:
    """Write the queued entries now (on `connection`, default the session's current one)."""
    rows = session.info.pop(_PENDING, None)
    if rows:
        (connection or session.connection()).execute(insert(_TABLE), rows)


def size(session: Session) -> int:
    """Number of entries in the log (committed, or written by this transaction)."""
    last = session.execute(select(func.max(AuditEntry.idx))).scalar_one_or_none()
    return 0 if last is None else int(last) + 1


@event.listens_for(OrmSession, "before_commit")
def _write_before_commit(session: OrmSession) -> None:
    flush_pending(session)


@event.listens_for(OrmSession, "do_orm_execute")
def _write_before_queries(state: ORMExecuteState) -> None:
    if state.session.info.get(_PENDING):
        flush_pending(state.session)


@event.listens_for(OrmSession, "after_transaction_create")
def _write_before_savepoints(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.nested and session.info.get(_PENDING) and transaction.parent is not None:
        # The SAVEPOINT is emitted lazily, so the parent's connection is still outside it.
        flush_pending(session, transaction.parent.connection(None))


@event.listens_for(OrmSession, "after_soft_rollback")
def _drop_on_rollback(session: OrmSession, previous_transaction: SessionTransaction) -> None:
    session.info.pop(_PENDING, None)


@event.listens_for(OrmSession, "after_transaction_end")
def _drop_when_closed(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (already written) or abandoned
        session.info.pop(_PENDING, None)
