"""One person, one subject: merging the duplicates the old ingest made (one e-mail, several
subjects), so that a request covers everything held about the person, and rectification of
the identity itself.

Merging lives here, at the top of the layers, because it re-points rows of every package
(legal holds, requests, disclosures) before `records.merge_subjects` moves the records and
deletes the duplicates. The audit trail gets ids and field names only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col

from audit_log import service as audit
from dsr.models import DsrDisclosure, DsrRequest, NotificationOutbox
from records import service as records
from records.crypto import Keyring
from records.models import Subject
from retention.models import HoldScope, LegalHold

SUBJECT_MERGED = "records.subject.merged"


def merge_into(
    session: Session,
    *,
    keyring: Keyring,
    subject_ids: list[uuid.UUID],
    actor: str,
    now: datetime,
) -> uuid.UUID:
    """Merge live subjects of one person into the oldest; returns its id."""
    subjects = sorted(
        (records.get_subject(session, s) for s in set(subject_ids)),
        key=lambda s: (s.created_at, s.id),
    )
    survivor = subjects[0].id
    duplicates = [s.id for s in subjects[1:]]
    if not duplicates:
        return survivor
    session.execute(
        update(LegalHold)
        .where(
            col(LegalHold.scope_kind) == HoldScope.subject.value,
            col(LegalHold.scope_value).in_([str(d) for d in duplicates]),
        )
        .values(scope_value=str(survivor))
    )
    session.execute(
        update(DsrRequest)
        .where(col(DsrRequest.subject_id).in_(duplicates))
        .values(subject_id=survivor)
    )
    session.execute(
        update(DsrDisclosure)
        .where(col(DsrDisclosure.subject_id).in_(duplicates))
        .values(subject_id=survivor)
    )
    # The outbox forgets a subject's messages when the subject is erased: a message to the
    # duplicate must follow the person, or it outlives their erasure.
    session.execute(
        update(NotificationOutbox)
        .where(col(NotificationOutbox.subject_id).in_(duplicates))
        .values(subject_id=survivor)
    )
    session.expire_all()  # the bulk updates bypassed the identity map
    merged = records.merge_subjects(
        session, keyring=keyring, survivor_id=survivor, duplicate_ids=duplicates, now=now
    )
    audit.append(
        session,
        action=SUBJECT_MERGED,
        actor=actor,
        now=now,
        subject_id=survivor,
        target=f"subject:{survivor}",
        details={
            "merged": [str(d) for d in merged.merged_ids],
            "records": merged.records,
            "dropped_fields": list(merged.dropped_fields),
        },
    )
    return survivor


def whole_person(
    session: Session, *, keyring: Keyring, subject_id: uuid.UUID, actor: str, now: datetime
) -> uuid.UUID:
    """The one subject of `subject_id`'s e-mail: duplicates of it are merged in first.

    Found by the subject's exact e-mail key, without decrypting anything, unless some subjects
    are not keyed yet (stored before 0007, `merge-duplicates` not run)."""
    subject = records.get_subject(session, subject_id)
    if subject.identity is None:
        return subject_id
    same = [m.id for m in records.same_email(session, keyring=keyring, subject=subject)]
    if len(set(same) | {subject_id}) == 1:
        return subject_id
    return merge_into(
        session, keyring=keyring, subject_ids=[*same, subject_id], actor=actor, now=now
    )


@dataclass
class MergeReport:
    subjects_checked: int = 0
    subjects_merged: int = 0
    external_id_conflicts: int = 0
    survivors: list[uuid.UUID] = field(default_factory=list)


def merge_duplicates(
    session: Session, *, keyring: Keyring, actor: str, now: datetime, batch_size: int = 500
) -> MergeReport:
    """`lethe subjects merge-duplicates`: give every live subject stored before 0007 its exact
    keys, merging those that share an e-mail into the oldest. Rerunnable: it only looks at
    subjects without keys."""
    report = MergeReport()
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        batch = records.subjects_missing_keys(session, after=after, limit=batch_size)
        if not batch:
            return report
        after = (batch[-1].created_at, batch[-1].id)
        for subject in batch:
            if session.get(Subject, subject.id) is None or subject.identity is None:
                continue  # merged away earlier in this run
            report.subjects_checked += 1
            identity = records.read_identity(session, keyring=keyring, subject=subject)
            same = [
                m.id
                for m in records.find_subject_matches(
                    session, keyring=keyring, email=identity.email
                )
            ]
            if len(set(same) | {subject.id}) > 1:
                survivor = merge_into(
                    session,
                    keyring=keyring,
                    subject_ids=[*same, subject.id],
                    actor=actor,
                    now=now,
                )
                report.subjects_merged += len(set(same) | {subject.id}) - 1
                report.survivors.append(survivor)
                continue
            try:
                records.set_identity(
                    session, keyring=keyring, subject=subject, identity=identity, now=now
                )
            except records.SubjectIdentityConflictError:
                # Another person's e-mail holds the same external id: nothing is changed, and
                # the operator is told (a rerun finds it again until someone resolves it).
                report.external_id_conflicts += 1
