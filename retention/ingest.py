"""Ingest use-cases: store subjects, records and events, compute due dates, write the audit trail.

Each use-case runs in the caller's unit of work: the domain rows and their audit entries land
together or not at all. Audit entries carry ids only.

Bulk import (`import_batch`) validates a batch of lines in Python first, then writes subjects,
data keys and records with one executemany each and one audit entry per batch (listing the ids),
so a bad line is reported without touching the transaction, and the cost per line stays small.
A line without an `id` gets one derived from a keyed hash of its content: importing the same
file twice adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log import service as audit
from records import service as records
from records.crypto import Keyring, seal
from records.db import unit_of_work
from records.errors import DomainError, InvalidInputError
from records.models import (
    RULE_RESTRICTION_GROUND,
    BusinessEvent,
    DataKey,
    PersonalRecord,
    Subject,
)
from records.schemas import ImportLine, RecordBody, RecordCreate, SubjectCreate
from records.types import EMAIL_MEMO, EmailMemo, value_free_error
from retention.due import Evaluator, recompute_for_event

log = structlog.get_logger(__name__)

SUBJECT_CREATED = "records.subject.created"
SUBJECT_UPDATED = "records.subject.updated"
RECORD_INGESTED = "records.record.ingested"
EVENT_RECORDED = "records.event.recorded"
KEY_DESTROYED = "records.key.destroyed"
KEK_ROTATED = "records.kek.rotated"
KEK_EPOCH_DESTROYED = "records.kek.epoch_destroyed"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# --- subjects ------------------------------------------------------------------------------------


def create_subject(
    session: Session, *, keyring: Keyring, body: SubjectCreate, actor: str, now: datetime
) -> Subject:
    """The subject of this e-mail, stored or new (see `resolve_subject`)."""
    return resolve_subject(session, keyring=keyring, body=body, actor=actor, now=now).subject


def resolve_subject(
    session: Session, *, keyring: Keyring, body: SubjectCreate, actor: str, now: datetime
) -> records.Resolved:
    """The subject of this e-mail: the stored one when there is one (one address, one subject),
    else a new one; `SubjectIdentityConflictError` (409) when the external id disagrees."""
    resolved = records.resolve_subject(
        session,
        keyring=keyring,
        email=body.email,
        name=body.name,
        external_id=body.external_id,
        attributes=body.attributes,
        now=now,
    )
    subject = resolved.subject
    if resolved.created:
        audit.append(
            session,
            action=SUBJECT_CREATED,
            actor=actor,
            now=now,
            subject_id=subject.id,
            target=f"subject:{subject.id}",
        )
    elif resolved.filled:
        audit.append(
            session,
            action=SUBJECT_UPDATED,
            actor=actor,
            now=now,
            subject_id=subject.id,
            target=f"subject:{subject.id}",
            details={"fields": list(resolved.filled)},
        )
    return resolved


def erase_subject_key(
    session: Session, *, subject_id: uuid.UUID, actor: str, now: datetime
) -> uuid.UUID:
    """Crypto-shred a subject (its data key, identity and indexes), audited. Returns the key id.

    Callers (DSR erasure, retention) decide first that nothing of the subject must be kept.
    """
    key = records.destroy_subject_key(session, subject_id=subject_id, now=now)
    audit.append(
        session,
        action=KEY_DESTROYED,
        actor=actor,
        now=now,
        subject_id=subject_id,
        target=f"data_key:{key.id}",
    )
    return key.id


# --- records -------------------------------------------------------------------------------------


def fingerprint_meta(body: RecordBody, subject_ref: Mapping[str, Any]) -> dict[str, Any]:
    """What a replay must repeat besides the payload: the record's fields and its subject."""
    return {
        "subject": dict(subject_ref),
        "policy": body.policy,
        "category": body.category,
        "subject_category": body.subject_category,
        "context": body.context,
        "outcome": body.outcome,
        "source": body.source,
        "collected_at": _utc(body.collected_at),
    }


def ingest_record(
    session: Session,
    *,
    keyring: Keyring,
    body: RecordCreate,
    actor: str,
    now: datetime,
    evaluator: Evaluator | None = None,
) -> tuple[PersonalRecord, bool]:
    """Store one record with its due date; returns (record, created). Same id and same body:
    the stored record, not created; same id and another body: RecordConflictError (409)."""
    payload_hash = records.record_fingerprint(
        keyring,
        fingerprint_meta(body, {"subject_id": str(body.subject_id)}),
        records.canonical_json(body.payload),
    )
    if body.id is not None:
        existing = session.get(PersonalRecord, body.id)
        if existing is not None:
            if existing.payload_hash != payload_hash:
                raise records.RecordConflictError(f"record {body.id} exists with another body")
            return existing, False
    evaluator = evaluator or Evaluator(session, now=now)
    undeclared = undeclared_category(evaluator, body)
    if undeclared is not None:
        raise InvalidInputError(f"{undeclared[0]}: {undeclared[1]}")
    version, due = evaluator.decide_record(body)
    record, created = records.put_record(
        session,
        keyring=keyring,
        record_id=body.id,
        subject_id=body.subject_id,
        policy=body.policy,
        policy_version=version,
        category=body.category,
        subject_category=body.subject_category,
        context=body.context,
        outcome=body.outcome,
        source=body.source,
        collected_at=body.collected_at,
        payload=body.payload,
        payload_hash=payload_hash,
        due=due,
        now=now,
    )
    if created:
        audit.append(
            session,
            action=RECORD_INGESTED,
            actor=actor,
            now=now,
            subject_id=record.subject_id,
            target=f"record:{record.id}",
            details=_record_details(record),
        )
    return record, created


def _record_details(record: PersonalRecord) -> dict[str, Any]:
    return {
        "policy": record.policy,
        "policy_version": record.policy_version,
        "category": record.category,
        "rule_id": record.rule_id,
        "rule_version": record.rule_version,
        "due_at": _utc(record.due_at) if record.due_at else None,
    }


# --- events --------------------------------------------------------------------------------------


def record_event(
    session: Session,
    *,
    type: str,
    context: str,
    occurred_at: datetime,
    actor: str,
    now: datetime,
    batch_size: int = 1000,
) -> BusinessEvent:
    """Store a business event and recompute the due dates of every record it triggers.

    A correction is a new event: the latest recorded one for (type, context) wins.
    """
    event = records.add_event(
        session, type=type, context=context, occurred_at=occurred_at, actor=actor, now=now
    )
    event.affected_records = recompute_for_event(
        session, event=event, now=now, batch_size=batch_size
    )
    session.add(event)
    session.flush()
    audit.append(
        session,
        action=EVENT_RECORDED,
        actor=actor,
        now=now,
        target=f"event:{event.id}",
        details={
            "type": event.type,
            "context": event.context,
            "occurred_at": _utc(event.occurred_at),
            "affected_records": event.affected_records,
        },
    )
    log.info("records.event.recorded", event_id=str(event.id), affected=event.affected_records)
    return event


# --- key-encryption-key epochs ---------------------------------------------------------------


def audit_kek_rotated(
    session: Session, *, epoch: int, rewrapped: int, actor: str, now: datetime
) -> None:
    audit.append(
        session,
        action=KEK_ROTATED,
        actor=actor,
        now=now,
        target=f"kek_epoch:{epoch}",
        details={"epoch": epoch, "rewrapped": rewrapped},
    )


def run_kek_rotation(
    engine: Engine,
    *,
    keyring: Keyring,
    actor: str,
    now: datetime,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Start a new KEK epoch and rewrap every live data key, one transaction per batch (a job
    or CLI runner, like the purge). Resumable: rerunning rewraps what is left. Returns
    (epoch, keys rewrapped)."""
    epoch = keyring.rotate(now=now)
    total = 0
    last: uuid.UUID | None = None
    while True:
        with unit_of_work(engine) as session:
            result = records.rewrap_batch(
                session, keyring=keyring, now=now, after=last, batch_size=batch_size
            )
        if result.rewrapped == 0:
            break
        total += result.rewrapped
        last = result.last_id
        if on_batch is not None:
            on_batch(result.rewrapped)
    with unit_of_work(engine) as session:
        audit_kek_rotated(session, epoch=epoch, rewrapped=total, actor=actor, now=now)
    return epoch, total


def destroy_expired_epochs(
    session: Session,
    *,
    keyring: Keyring,
    backup_window: timedelta,
    actor: str,
    now: datetime,
) -> list[int]:
    destroyed = records.destroy_expired_epochs(
        session, keyring=keyring, now=now, backup_window=backup_window
    )
    for epoch in destroyed:
        audit.append(
            session,
            action=KEK_EPOCH_DESTROYED,
            actor=actor,
            now=now,
            target=f"kek_epoch:{epoch}",
            details={"epoch": epoch, "backup_window_days": backup_window.days},
        )
    return destroyed


# --- bulk import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    reason: str

    def message(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


@dataclass
class BatchResult:
    imported: int = 0
    record_ids: list[uuid.UUID] = field(default_factory=list)
    failures: list[LineError] = field(default_factory=list)


class ImportState:
    """What an import run remembers across its batches (subjects resolved by e-mail)."""

    def __init__(self, session: Session, *, keyring: Keyring, now: datetime) -> None:
        self.keyring = keyring
        self.now = now
        self.evaluator = Evaluator(session, now=now)
        self.subject_by_email: dict[str, uuid.UUID] = {}
        # e-mail → stored subjects found by the batch's look-up, not yet used by a line
        self.matches: dict[str, list[records.SubjectMatch]] = {}
        # One external id is one subject too: who holds it, and what each known subject holds,
        # both by exact key (a stored subject's external id is compared, never decrypted).
        self.subject_by_external: dict[str, uuid.UUID] = {}
        self.external_key_of: dict[uuid.UUID, str | None] = {}
        self.external_matches: dict[str, list[records.SubjectMatch]] = {}
        self._external_keys: dict[str, str] = {}  # a subject's lines repeat its external id
        self.cache = records.KeyCache(keyring)

    def rebind(self, session: Session) -> None:
        """A new transaction (one per batch): keep the caches that stay true.

        Business events are read again: one recorded between two batches must set the due
        dates of the later batches' records (its recomputation only saw the earlier ones).
        """
        self.evaluator.session = session
        self.evaluator.forget_events()

    def remember(self, email: str, subject_id: uuid.UUID) -> None:
        self.subject_by_email[email] = subject_id

    def external_key(self, external_id: str) -> str:
        key = self._external_keys.get(external_id)
        if key is None:
            key = records.exact_key(self.keyring, records.EXTERNAL_ID, external_id)
            self._external_keys[external_id] = key
        return key

    def trim(self, limit: int = 50_000) -> None:
        """Keep memory bounded on long imports: the caches only save work, the database decides
        (about 200 bytes a subject: 10 MB at the limit)."""
        if len(self.subject_by_email) > limit:
            self.subject_by_email.clear()
            self.subject_by_external.clear()
            self.external_key_of.clear()
        if len(self._external_keys) > limit:
            self._external_keys.clear()
        if len(self.cache) > limit // 4:
            self.cache = records.KeyCache(self.keyring)
        self.matches.clear()
        self.external_matches.clear()
        self.evaluator.trim(limit)


def _validation_error(line: int, exc: ValidationError) -> LineError:
    # Name the field and the reason, never the value nor a key the client made up (data, both).
    where, reason = value_free_error(exc.errors(include_url=False)[0])
    return LineError(line, where, reason)


def parse_ndjson_line(
    line_no: int, text: str, *, emails: EmailMemo | None = None
) -> ImportLine | LineError:
    """One NDJSON line; `emails`: the run's memo of validated addresses (lines repeat them)."""
    try:
        line = ImportLine.model_validate_json(text, context={EMAIL_MEMO: emails})
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        if err.get("type") == "json_invalid":
            return LineError(line_no, "", "not JSON")
        if err.get("type") == "model_type":
            return LineError(line_no, "", "a line must be a JSON object")
        return _validation_error(line_no, exc)
    return _check_subject(line_no, line)


def _check_subject(line_no: int, line: ImportLine) -> ImportLine | LineError:
    if (line.subject_id is None) == (line.subject is None):
        return LineError(line_no, "subject", "give exactly one of subject_id or subject")
    return line


def validate_line(
    line_no: int, raw: Any, *, emails: EmailMemo | None = None
) -> ImportLine | LineError:
    if not isinstance(raw, dict):
        return LineError(line_no, "", "a line must be a JSON object")
    try:
        line = ImportLine.model_validate(raw, context={EMAIL_MEMO: emails})
    except ValidationError as exc:
        return _validation_error(line_no, exc)
    return _check_subject(line_no, line)


CSV_SUBJECT_PREFIX = "subject."
CSV_PAYLOAD_PREFIX = "payload."


def csv_row_to_line(row: Mapping[str, str | None]) -> dict[str, Any]:
    """A CSV row as an import line: `subject.email`, `subject.name`… build the inline subject,
    `payload` holds a JSON object or `payload.<key>` columns build one; empty cells are absent."""
    line: dict[str, Any] = {}
    subject: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or value == "":
            continue
        if key.startswith(CSV_SUBJECT_PREFIX):
            subject[key[len(CSV_SUBJECT_PREFIX) :]] = value
        elif key.startswith(CSV_PAYLOAD_PREFIX):
            payload[key[len(CSV_PAYLOAD_PREFIX) :]] = value
        elif key == "payload":
            try:
                payload.update(json.loads(value))
            except (json.JSONDecodeError, TypeError, ValueError):
                line["payload"] = "<not a JSON object>"
        else:
            line[key] = value
    if subject:
        line["subject"] = subject
    if "payload" not in line:
        line["payload"] = payload
    return line


def read_lines(stream: Iterable[str], *, fmt: str) -> Iterator[tuple[int, ImportLine | LineError]]:
    """Parse NDJSON or CSV lazily: (line number, line or error). Blank lines are skipped."""
    emails = EmailMemo()
    if fmt == "csv":
        reader = csv.DictReader(stream)
        for row in reader:
            yield (
                reader.line_num,
                validate_line(reader.line_num, csv_row_to_line(row), emails=emails),
            )
        return
    for number, text in enumerate(stream, start=1):
        if text.strip():
            yield number, parse_ndjson_line(number, text, emails=emails)


def batched(
    items: Iterable[tuple[int, ImportLine | LineError]], size: int
) -> Iterator[list[tuple[int, ImportLine | LineError]]]:
    batch: list[tuple[int, ImportLine | LineError]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _derived_id(payload_hash: str) -> uuid.UUID:
    """The id of a line without one: from its keyed content hash, so a replay finds it."""
    digest = hashlib.sha256(b"lethe/record-id/1" + bytes.fromhex(payload_hash)).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def _existing_subjects(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, bool]:
    """id → erased? for the given ids that exist."""
    if not ids:
        return {}
    rows = session.execute(
        select(col(Subject.id), col(Subject.erased_at)).where(
            records.one_of(session, col(Subject.id), ids)
        )
    ).all()
    return {r[0]: r[1] is not None for r in rows}


def import_batch(
    session: Session,
    *,
    state: ImportState,
    lines: list[tuple[int, ImportLine | LineError]],
    actor: str,
    now: datetime,
) -> BatchResult:
    """Import one batch of parsed lines in the caller's transaction; bad lines are reported."""
    keyring = state.keyring
    result = BatchResult()
    good: list[tuple[int, ImportLine, str, uuid.UUID, bytes]] = []
    for number, parsed in lines:
        if isinstance(parsed, LineError):
            result.failures.append(parsed)
            continue
        if parsed.subject is not None:
            ref: dict[str, Any] = {"email": records.normalise_email(parsed.subject.email)}
        else:
            ref = {"subject_id": str(parsed.subject_id)}
        payload = records.canonical_json(parsed.payload)
        payload_hash = records.record_fingerprint(keyring, fingerprint_meta(parsed, ref), payload)
        record_id = parsed.id or _derived_id(payload_hash)
        good.append((number, parsed, payload_hash, record_id, payload))

    # Replays and conflicts of record ids (within the batch and with stored records).
    stored = (
        dict(
            session.execute(
                select(col(PersonalRecord.id), col(PersonalRecord.payload_hash)).where(
                    records.one_of(session, col(PersonalRecord.id), [g[3] for g in good])
                )
            ).all()
        )
        if good
        else {}
    )
    fresh: list[tuple[int, ImportLine, str, uuid.UUID, bytes]] = []
    in_batch: dict[uuid.UUID, str] = {}
    repeats: list[tuple[int, uuid.UUID, str]] = []  # an id seen earlier in this batch
    for number, parsed, payload_hash, record_id, payload in good:
        known = stored.get(record_id)
        if known is not None:
            if known == payload_hash:
                result.imported += 1  # a replay: already there, nothing to do
            else:
                result.failures.append(
                    LineError(number, "id", "a record with this id exists with another body")
                )
            continue
        if record_id in in_batch:
            repeats.append((number, record_id, payload_hash))
            continue
        in_batch[record_id] = payload_hash
        fresh.append((number, parsed, payload_hash, record_id, payload))

    # Subjects: by id (must exist, not erased) or inline (found by e-mail, else created).
    by_id = _existing_subjects(
        session, {p.subject_id for _, p, _, _, _ in fresh if p.subject_id is not None}
    )
    unseen = {
        records.normalise_email(p.subject.email) for _, p, _, _, _ in fresh if p.subject is not None
    } - state.subject_by_email.keys()
    # One query on the exact keys each; identities stay sealed (a stored subject's data key is
    # unwrapped once, below, because its new records are sealed under it).
    state.matches.update(records.find_subjects_by_emails(session, keyring=keyring, emails=unseen))
    state.external_matches.update(
        records.find_subjects_by_external_ids(
            session,
            keyring=keyring,
            external_ids={
                ext
                for ext in (
                    p.subject.external_id.strip()
                    for _, p, _, _, _ in fresh
                    if p.subject is not None and p.subject.external_id
                )
                if state.external_key(ext) not in state.subject_by_external
            },
        )
    )
    state.cache.prefetch(
        session,
        [s for s, erased in by_id.items() if not erased]
        + [found[0].id for email, found in state.matches.items() if email in unseen],
    )
    new_subjects: list[dict[str, Any]] = []
    new_keys: list[dict[str, Any]] = []
    new_subject_ids: list[uuid.UUID] = []
    rows: list[dict[str, Any]] = []
    for number, parsed, payload_hash, record_id, payload in fresh:
        try:
            undeclared = undeclared_category(state.evaluator, parsed)
            if undeclared is not None:
                raise LineFailure(*undeclared)
            version, due = state.evaluator.decide_record(parsed)
            if parsed.subject_id is not None:
                erased = by_id.get(parsed.subject_id)
                if erased is None:
                    raise LineFailure("subject_id", "no such subject")
                if erased:
                    raise LineFailure("subject_id", "the subject is erased")
                subject_id = parsed.subject_id
            else:
                assert parsed.subject is not None
                subject_id = _resolve_inline_subject(
                    session,
                    state=state,
                    subject=parsed.subject,
                    now=now,
                    new_subjects=new_subjects,
                    new_keys=new_keys,
                    new_subject_ids=new_subject_ids,
                )
            key_id, data_key = state.cache.get(session, subject_id)
        except LineFailure as exc:
            result.failures.append(LineError(number, exc.field, exc.reason))
            continue
        except DomainError as exc:
            field_name = "policy" if exc.code == "unknown-policy" else ""
            result.failures.append(LineError(number, field_name, exc.detail))
            continue
        rows.append(
            {
                "id": record_id,
                "subject_id": subject_id,
                "policy": parsed.policy,
                "policy_version": version,
                "category": parsed.category,
                "subject_category": parsed.subject_category,
                "context": parsed.context,
                "outcome": parsed.outcome,
                "source": parsed.source,
                "collected_at": parsed.collected_at,
                "payload": seal(
                    data_key,
                    key_id,
                    payload,
                    records.payload_binding(record_id, subject_id),
                ),
                "payload_hash": payload_hash,
                "due_at": due.due_at,
                "rule_id": due.rule_id,
                "rule_version": due.rule_version,
                "action": due.action,
                "handover_to": due.handover_to,
                "status": "active",
                "restricted_at": now if due.restricted else None,
                "restriction_ground": RULE_RESTRICTION_GROUND if due.restricted else None,
                "created_at": now,
                "updated_at": now,
            }
        )
        result.record_ids.append(record_id)

    stored_now = set(result.record_ids)
    for number, record_id, payload_hash in repeats:
        if record_id not in stored_now:
            result.failures.append(
                LineError(number, "id", "repeats the id of an earlier line that failed")
            )
        elif in_batch[record_id] == payload_hash:
            result.imported += 1
        else:
            result.failures.append(
                LineError(number, "id", "repeats the id of an earlier line with another body")
            )

    if new_subjects:
        records.bulk_insert(session, Subject.__table__, new_subjects)  # type: ignore[attr-defined]
        records.bulk_insert(session, DataKey.__table__, new_keys)  # type: ignore[attr-defined]
        audit.append(
            session,
            action=SUBJECT_CREATED,
            actor=actor,
            now=now,
            target="import",
            details={"subjects": [str(s) for s in new_subject_ids]},
        )
    if rows:
        records.bulk_insert(session, PersonalRecord.__table__, rows)  # type: ignore[attr-defined]
        audit.append(
            session,
            action=RECORD_INGESTED,
            actor=actor,
            now=now,
            target="import",
            details={"records": [str(r) for r in result.record_ids]},
        )
    result.imported += len(rows)
    result.failures.sort(key=lambda f: f.line)
    state.trim()
    return result


def undeclared_category(evaluator: Evaluator, body: RecordBody) -> tuple[str, str] | None:
    """(field, reason) when the record's categories are not declared by its processing record.

    Art. 31(1)(c): the record lists the categories it processes; data of another category has no
    rule that was meant for it, and would be kept silently under "no rule applies"."""
    _, document = evaluator.policy(body.policy)
    # Once per line of an import: look the keys up, no sets built per line.
    if document.data_category(body.category) is None:
        return "category", f"not a data category of {document.reference}"
    wanted = body.subject_category
    if wanted is not None and not any(c.key == wanted for c in document.subject_categories):
        return "subject_category", f"not a subject category of {document.reference}"
    return None


def import_batch_committed(
    engine: Engine,
    *,
    state: ImportState,
    lines: list[tuple[int, ImportLine | LineError]],
    actor: str,
    now: datetime,
) -> BatchResult:
    """Import one batch in its own short write transaction (a runner, like the purge).

    The write lock (SQLite) or the audit writer lock (PostgreSQL) is held for one batch only and
    released before the next is read, so public intake, holds and every other writer get in
    between batches instead of waiting out a whole import. A failure loses only its own batch;
    earlier batches stay, and importing the same lines again adds nothing (derived ids).
    """
    with unit_of_work(engine) as session:
        state.rebind(session)
        return import_batch(session, state=state, lines=lines, actor=actor, now=now)


class LineFailure(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _resolve_inline_subject(
    session: Session,
    *,
    state: ImportState,
    subject: SubjectCreate,
    now: datetime,
    new_subjects: list[dict[str, Any]],
    new_keys: list[dict[str, Any]],
    new_subject_ids: list[uuid.UUID],
) -> uuid.UUID:
    """One address is one subject: the stored (oldest) subject of the e-mail, or a new one. A
    line whose external id disagrees with the stored identity fails; an external id missing
    on the stored subject is not filled in here (POST /v1/subjects does that, audited)."""
    email = records.normalise_email(subject.email)
    ext = subject.external_id.strip() if subject.external_id else None
    ext_key = state.external_key(ext) if ext is not None else None
    known = state.subject_by_email.get(email)
    if known is None and state.matches.get(email):
        match = state.matches[email][0]
        known = match.id
        state.external_key_of[known] = match.external_id_key
    if ext is not None and ext_key is not None:
        owner = state.subject_by_external.get(ext_key)
        owners = [owner] if owner is not None else []
        matches = state.external_matches.get(ext, [])
        if matches:
            mail_key = records.exact_key(state.keyring, records.EMAIL, email)
            owners += [m.id for m in matches if m.email_key != mail_key]
        if any(o != known for o in owners):
            raise LineFailure(
                "subject.external_id", "belongs to a subject with another e-mail address"
            )
    if known is not None:
        held = state.external_key_of.get(known)
        if ext_key is not None and held is not None and held != ext_key:
            raise LineFailure(
                "subject.external_id", "the subject with this e-mail has another external_id"
            )
        state.remember(email, known)
        if held is not None:
            state.subject_by_external[held] = known
        return known
    new = records.new_subject_rows(
        state.keyring,
        email=email,
        name=subject.name,
        external_id=subject.external_id,
        attributes=subject.attributes,
        now=state.now,
    )
    new_subjects.append(new.subject_row)
    new_keys.append(new.key_row)
    new_subject_ids.append(new.id)
    state.remember(email, new.id)
    state.external_key_of[new.id] = ext_key
    if ext_key is not None:
        state.subject_by_external[ext_key] = new.id
    state.cache.put(new.id, new.key_id, new.data_key)
    return new.id
