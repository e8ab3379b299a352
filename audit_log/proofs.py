"""Entries and proofs as served to auditors (API and CLI share these)."""

from __future__ import annotations

import base64

from sqlmodel import Session, col, select

from audit_log import service
from audit_log.errors import AuditRangeError
from audit_log.merkle import ProofError
from audit_log.models import AuditEntry
from audit_log.schemas import ConsistencyProofOut, EntryOut, InclusionProofOut
from audit_log.tree import TreeReader

MAX_ENTRIES = 1000


def entries(session: Session, *, start: int, end: int | None) -> list[EntryOut]:
    """Entries [start, end) — at most MAX_ENTRIES; `end` defaults to start + MAX_ENTRIES."""
    end = start + MAX_ENTRIES if end is None else end
    if start < 0 or end < start or end - start > MAX_ENTRIES:
        raise AuditRangeError(f"give 0 <= start <= end with at most {MAX_ENTRIES} entries")
    rows = session.exec(
        select(col(AuditEntry.idx), col(AuditEntry.body))
        .where(col(AuditEntry.idx) >= start, col(AuditEntry.idx) < end)
        .order_by(col(AuditEntry.idx))
    )
    return [EntryOut(index=idx, body=body) for idx, body in rows]


def _check_size(session: Session, size: int) -> None:
    current = service.size(session)
    if size > current:
        raise AuditRangeError(f"size {size} is beyond the log's {current} entries")


def inclusion(session: Session, *, index: int, size: int) -> InclusionProofOut:
    _check_size(session, size)
    try:
        proof = TreeReader(session).inclusion_proof(index, size)
    except ProofError as exc:
        raise AuditRangeError(str(exc)) from exc
    return InclusionProofOut(index=index, size=size, proof=_b64(proof))


def consistency(session: Session, *, first: int, second: int) -> ConsistencyProofOut:
    _check_size(session, second)
    try:
        proof = TreeReader(session).consistency_proof(first, second)
    except ProofError as exc:
        raise AuditRangeError(str(exc)) from exc
    return ConsistencyProofOut(first=first, second=second, proof=_b64(proof))


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]
