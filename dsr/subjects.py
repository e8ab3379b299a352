"""The requester's side of `records`: who an e-mail belongs to, and where to write back."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from records import service as records
from records.crypto import KeyDestroyedError, Keyring
from records.models import Subject


def find_subject_id(session: Session, keyring: Keyring, email: str) -> uuid.UUID | None:
    """The subject whose e-mail on file is exactly `email` (the earliest if several), found by
    its exact key: nothing is decrypted."""
    found = records.find_subject_matches(session, keyring=keyring, email=email)
    return found[0].id if found else None


def email_on_file(session: Session, keyring: Keyring, subject_id: uuid.UUID) -> str | None:
    subject = session.get(Subject, subject_id)
    if subject is None or subject.identity is None:
        return None
    try:
        return records.read_identity(session, keyring=keyring, subject=subject).email
    except KeyDestroyedError:
        return None
