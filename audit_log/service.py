"""Appending to the audit trail, in the caller's transaction.

`append` allocates the next dense index under a writer lock (SQLite: the transaction is begun
`IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), so concurrent writers serialise
and a rolled-back transaction leaves no gap. It never hashes more than its own leaf: tree heads
are computed at checkpoint time from stored subtrees (see `audit_log.tree`).
"""

from __future__ import annotations

import hashlib
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session

from audit_log import canonical
from audit_log.errors import AuditDetailsError
from audit_log.models import AuditEntry
from records.db import begin_write

# Key of PostgreSQL's transaction advisory lock that serialises audit writers ("LETHEAUD").
ADVISORY_LOCK_KEY = 0x4C45544845415544
_NEXT = "lethe_audit_next_index"


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditDetailsError("audit time must be an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    for name in ("action", "actor", "target"):
        canonical.check_value(value[name], name)
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
    """Write one entry in the caller's transaction and return it (not yet committed)."""
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
    entry = AuditEntry(
        idx=index,
        created_at=now,
        action=action,
        actor=actor,
        subject_id=subject_id,
        target=target,
        body=body,
        leaf_hash=leaf_hash(body.encode("utf-8")),
    )
    session.add(entry)
    transaction = _current_transaction(session)
    if transaction is not None:
        session.info[_NEXT] = (weakref.ref(transaction), index + 1)
    return entry


def size(session: Session) -> int:
    """Number of entries in the log (committed and visible to this session)."""
    last = session.execute(select(func.max(AuditEntry.idx))).scalar_one_or_none()
    return 0 if last is None else int(last) + 1
