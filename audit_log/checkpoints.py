"""Signed tree heads: C2SP `tlog-checkpoint` bodies in C2SP signed notes (Ed25519)."""

from __future__ import annotations

import base64
from datetime import datetime

from sqlmodel import Session, col, select

from audit_log import service
from audit_log.errors import CheckpointNotFoundError
from audit_log.models import AuditCheckpoint
from audit_log.signing import NoteSigner
from audit_log.tree import TreeReader, extend_subtrees


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The tlog-checkpoint body: origin, decimal tree size, base64 root hash, each on a line."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def latest(session: Session) -> AuditCheckpoint | None:
    return session.exec(
        select(AuditCheckpoint)
        .order_by(col(AuditCheckpoint.size).desc(), col(AuditCheckpoint.created_at).desc())
        .limit(1)
    ).first()


def latest_or_404(session: Session) -> AuditCheckpoint:
    found = latest(session)
    if found is None:
        raise CheckpointNotFoundError("no checkpoint has been made yet")
    return found


def all_in_order(session: Session) -> list[AuditCheckpoint]:
    return list(
        session.exec(
            select(AuditCheckpoint).order_by(
                col(AuditCheckpoint.created_at), col(AuditCheckpoint.size)
            )
        )
    )


def make_checkpoint(
    session: Session, *, signer: NoteSigner, now: datetime, force: bool = False
) -> AuditCheckpoint:
    """Sign the current tree head (entries of this transaction included).

    Takes the audit writer lock, so the head covers exactly the entries committed before it and
    those of the caller. Without `force`, returns the latest checkpoint when the log has not
    grown since.
    """
    service.lock_writer(session)
    size = service.size(session)
    previous = latest(session)
    if previous is not None and previous.size == size and not force:
        return previous
    extend_subtrees(session, size)
    root = TreeReader(session).root(size)
    note = signer.sign_note(checkpoint_body(signer.name, size, root))
    checkpoint = AuditCheckpoint(size=size, root_hash=root, note=note, created_at=now)
    session.add(checkpoint)
    session.flush()
    return checkpoint
