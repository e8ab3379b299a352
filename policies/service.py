"""The policy registry: load policy files as versions, read the current or an old version.

Tables (see `policies.models`): `processing_record` (one per reference, `current_version`) and
`processing_record_version` (immutable; the document JSON, its YAML source and content hash).
Loading content whose hash equals the current version's makes no new version and no audit entry;
anything else makes version n+1 and appends `policies.policy.loaded` in the same transaction.

    >>> result = load_policy_file(session, path_or_text=Path("DPR-EC-01488.yaml"),
    ...                           actor="cli", now=now)                    # doctest: +SKIP
    >>> result.version, result.created                                       # doctest: +SKIP
    (1, True)
    >>> row, document = current(session, "DPR-EC-01488")                     # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import text
from sqlmodel import Session, col, select

from audit_log import service as audit
from policies.document import DpoFlag, PolicyDocument
from policies.errors import PolicyNotFoundError
from policies.loader import ParsedPolicy, parse_policy, read_policy_file
from policies.models import ProcessingRecord, ProcessingRecordVersion
from records.db import begin_write

log = structlog.get_logger(__name__)

LOADED = "policies.policy.loaded"


@dataclass(frozen=True)
class LoadResult:
    reference: str
    version: int
    content_hash: str
    created: bool
    row: ProcessingRecordVersion


@dataclass(frozen=True)
class PolicySummary:
    reference: str
    title: str
    version: int
    content_hash: str
    loaded_at: datetime
    unresolved_references: list[str]
    dpo_flags: list[DpoFlag] = field(default_factory=list)


# Versions are immutable, so a parsed document can be cached by its content hash.
_DOCUMENTS: OrderedDict[str, PolicyDocument] = OrderedDict()
_CACHE_SIZE = 256


def document_of(row: ProcessingRecordVersion) -> PolicyDocument:
    """The validated document of a stored version."""
    cached = _DOCUMENTS.get(row.content_hash)
    if cached is not None:
        _DOCUMENTS.move_to_end(row.content_hash)
        return cached
    document = PolicyDocument.model_validate(row.document)
    _DOCUMENTS[row.content_hash] = document
    while len(_DOCUMENTS) > _CACHE_SIZE:
        _DOCUMENTS.popitem(last=False)
    return document


def _lock_key(reference: str) -> int:
    raw = hashlib.sha256(f"lethe.policy:{reference}".encode()).digest()[:8]
    return int.from_bytes(raw, "big", signed=True)


def load_parsed(session: Session, *, parsed: ParsedPolicy, actor: str, now: datetime) -> LoadResult:
    """Store `parsed` as the next version of its record unless it equals the current one."""
    begin_write(session)
    document = parsed.document
    digest = parsed.content_hash
    if session.get_bind().dialect.name == "postgresql":
        # Two loads of one reference serialise (SQLite: BEGIN IMMEDIATE already does), so a
        # first load racing another is never a unique-constraint 500.
        session.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(document.reference)}
        )
    record = session.exec(
        select(ProcessingRecord)
        .where(ProcessingRecord.reference == document.reference)
        .with_for_update()
    ).one_or_none()
    if record is not None:
        existing = _version_row(session, record, record.current_version)
        if existing.content_hash == digest:
            return LoadResult(document.reference, existing.version, digest, False, existing)
        record.current_version += 1
        record.title = document.title
        record.updated_at = now
    else:
        record = ProcessingRecord(
            reference=document.reference,
            title=document.title,
            current_version=1,
            created_at=now,
            updated_at=now,
        )
    session.add(record)
    session.flush()
    row = ProcessingRecordVersion(
        record_id=record.id,
        version=record.current_version,
        content_hash=digest,
        document=document.model_dump(mode="json"),
        source_text=parsed.source_text,
        source_name=Path(parsed.source_name).name[:300],
        loaded_at=now,
        loaded_by=actor[:200],
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        action=LOADED,
        actor=actor,
        now=now,
        target=f"policy:{document.reference}",
        details={
            "reference": document.reference,
            "version": row.version,
            "content_hash": digest,
            "rules": len(document.rules),
        },
    )
    _DOCUMENTS[digest] = document
    log.info(LOADED, reference=document.reference, version=row.version, content_hash=digest)
    return LoadResult(document.reference, row.version, digest, True, row)


def load_policy_file(
    session: Session,
    *,
    path_or_text: Path | str,
    actor: str,
    now: datetime,
    source_name: str | None = None,
) -> LoadResult:
    """Load one policy: a `Path` is read from disk; a `str` is the YAML text itself."""
    if isinstance(path_or_text, Path):
        parsed = read_policy_file(path_or_text)
    else:
        parsed = parse_policy(path_or_text, source=source_name or "<policy>")
    return load_parsed(session, parsed=parsed, actor=actor, now=now)


def _record(session: Session, reference: str) -> ProcessingRecord:
    record = session.exec(
        select(ProcessingRecord).where(ProcessingRecord.reference == reference)
    ).one_or_none()
    if record is None:
        raise PolicyNotFoundError(f"no processing record {reference} in the registry")
    return record


def _version_row(
    session: Session, record: ProcessingRecord, version: int
) -> ProcessingRecordVersion:
    row = session.exec(
        select(ProcessingRecordVersion).where(
            ProcessingRecordVersion.record_id == record.id,
            ProcessingRecordVersion.version == version,
        )
    ).one_or_none()
    if row is None:
        raise PolicyNotFoundError(f"processing record {record.reference} has no version {version}")
    return row


def current(session: Session, reference: str) -> tuple[ProcessingRecordVersion, PolicyDocument]:
    """The current version row of `reference` and its document; PolicyNotFoundError (404)."""
    record = _record(session, reference)
    row = _version_row(session, record, record.current_version)
    return row, document_of(row)


def get_version(
    session: Session, reference: str, version: int
) -> tuple[ProcessingRecordVersion, PolicyDocument]:
    """A given (possibly old) version: decisions made under it stay explainable."""
    row = _version_row(session, _record(session, reference), version)
    return row, document_of(row)


def versions(session: Session, reference: str) -> list[ProcessingRecordVersion]:
    record = _record(session, reference)
    return list(
        session.exec(
            select(ProcessingRecordVersion)
            .where(ProcessingRecordVersion.record_id == record.id)
            .order_by(col(ProcessingRecordVersion.version))
        )
    )


def known_references(session: Session) -> set[str]:
    return set(session.exec(select(ProcessingRecord.reference)))


def unresolved_references(document: PolicyDocument, known: set[str]) -> list[str]:
    """Records `document` names (related, handover targets) that are not in the registry."""
    return [ref for ref in document.referenced_records() if ref not in known]


def current_documents(session: Session) -> list[tuple[ProcessingRecordVersion, PolicyDocument]]:
    """Every record's current version, by reference (for minimum obligations across records)."""
    rows = session.exec(
        select(ProcessingRecordVersion)
        .join(ProcessingRecord, col(ProcessingRecord.id) == col(ProcessingRecordVersion.record_id))
        .where(ProcessingRecordVersion.version == ProcessingRecord.current_version)
        .order_by(col(ProcessingRecord.reference))
    )
    return [(row, document_of(row)) for row in rows]


def list_policies(session: Session) -> list[PolicySummary]:
    """Every record's current version, with the references it makes that nobody has loaded."""
    current_rows = current_documents(session)
    known = {document.reference for _, document in current_rows}
    return [
        PolicySummary(
            reference=document.reference,
            title=document.title,
            version=row.version,
            content_hash=row.content_hash,
            loaded_at=row.loaded_at,
            unresolved_references=unresolved_references(document, known),
            dpo_flags=document.dpo_flags(),
        )
        for row, document in current_rows
    ]
