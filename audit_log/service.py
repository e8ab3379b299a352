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


_last_time: tuple[datetime, str] | None = None


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and a `Z`: `2026-03-27T11:00:00.000000Z`."""
    global _last_time
    last = _last_time
    if last is not None and last[0] is moment:  # callers pass one `now` to many entries
        return last[1]
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditDetailsError("audit time must be an aware datetime")
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    text = utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    _last_time = (moment, text)
    return text


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
    """The canonical JSON body of one entry (format version `canonical.FORMAT_VERSION`).

    Keys in sorted order: action, actor, at, details, index, subject, target, v. Built from its
    parts for speed; a property test holds it equal to `canonical.dumps` of the same value.
    """
    if not action or not actor:
        raise AuditDetailsError("an audit entry needs an action and an actor")
    if subject_id is not None and not isinstance(subject_id, uuid.UUID):
        raise AuditDetailsError("an audit subject is a pseudonymous UUID, nothing else")
    check = canonical.check_value
    check(action, "action")
    check(actor, "actor")
    check(target, "target")
    if details is None:
        details_json = "{}"
    else:
        if type(details) is not dict:
            details = dict(details)
        check(details)
        details_json = canonical.dumps(details)
    enc = canonical.encode_string
    return "".join(
        (
            '{"action":',
            enc(action),
            ',"actor":',
            enc(actor),
            ',"at":"',
            format_time(now),
            '","details":',
            details_json,
            ',"index":',
            str(index),
            ',"subject":',
            "null" if subject_id is None else f'"{subject_id}"',
            ',"target":',
            "null" if target is None else enc(target),
            f',"v":{canonical.FORMAT_VERSION}}}',
        )
    )


def lock_writer(session: Session) -> None:
    """Serialise with every other audit writer until this transaction ends."""
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})


def _current_transaction(session: Session) -> SessionTransaction | None:
    # The innermost transaction: a rolled-back savepoint must not leave a cached index behind.
    return session.get_nested_transaction() or session.get_transaction()


def _next_index(session: Session) -> list[Any]:
    """[transaction ref, next free index], taking the writer lock on first use in a transaction."""
    info = session.info
    cached: list[Any] | None = info.get(_NEXT)
    if cached is not None:
        transaction = _current_transaction(session)
        if transaction is not None and cached[0]() is transaction:
            return cached
    lock_writer(session)
    last = session.execute(select(func.max(AuditEntry.idx))).scalar_one_or_none()
    transaction = _current_transaction(session)
    assert transaction is not None  # lock_writer began one
    cached = [weakref.ref(transaction), 0 if last is None else int(last) + 1]
    info[_NEXT] = cached
    return cached


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
    next_index = _next_index(session)
    index: int = next_index[1]
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
    pending = session.info.get(_PENDING)
    if pending is None:
        session.info[_PENDING] = pending = []
    pending.append(row)
    next_index[1] = index + 1
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
