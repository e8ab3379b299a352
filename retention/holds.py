"""Legal holds (DESIGN §5.1): a hold beats every expiry and every erasure.

A hold is scoped to a subject, a processing record, a context or a single record and matched
against the record's own fields. A restriction on EUDPR Art. 20(1)(b) or (c) grounds (the
subject opposes erasure, or needs the data for legal claims) keeps the data the same way.

Placing a hold on PostgreSQL takes an exclusive advisory lock that every disposition batch takes
shared before it re-checks holds, so a hold committed while a batch is in flight waits for it and
every later batch sees it. On SQLite writers are serialised by `BEGIN IMMEDIATE` already.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session, col

from audit_log import service as audit
from policies.models import ProcessingRecord
from records.db import begin_write
from records.http import Actor
from records.models import BusinessEvent, PersonalRecord, Subject
from records.pagination import Keyset
from retention.errors import (
    HoldAlreadyReleasedError,
    HoldNotFoundError,
    InvalidHoldScopeError,
)
from retention.models import HoldScope, LegalHold

# Key of the PostgreSQL advisory lock between hold placement and disposition batches ("LETHEHLD").
HOLD_LOCK_KEY = 0x4C455448_45484C44


@dataclass(frozen=True)
class Scope:
    kind: HoldScope
    value: str

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> Scope:
        keys = {
            "subject_id": HoldScope.subject,
            "policy": HoldScope.policy,
            "context": HoldScope.context,
            "record_id": HoldScope.record,
        }
        given = [(k, v) for k, v in raw.items() if v is not None]
        if len(given) != 1 or given[0][0] not in keys:
            raise InvalidHoldScopeError(
                "scope needs exactly one of subject_id, policy, context, record_id"
            )
        name, value = given[0]
        kind = keys[name]
        text_value = str(value).strip()
        if not text_value or len(text_value) > 200:
            raise InvalidHoldScopeError(f"scope {name} must be 1 to 200 characters")
        if kind in (HoldScope.subject, HoldScope.record):
            try:
                text_value = str(uuid.UUID(text_value))
            except ValueError as exc:
                raise InvalidHoldScopeError(f"scope {name} must be a UUID") from exc
        return cls(kind=kind, value=text_value)

    def as_dict(self) -> dict[str, str]:
        name = {
            HoldScope.subject: "subject_id",
            HoldScope.policy: "policy",
            HoldScope.context: "context",
            HoldScope.record: "record_id",
        }[self.kind]
        return {name: self.value}


# Told to the data subject when a hold placed without a subject-facing reason keeps their data.
# The internal reason may name an investigation or a litigant; EUDPR Art. 25(8) lets the
# controller defer or omit the reasons where telling them would defeat the restriction.
DEFAULT_SUBJECT_REASON = (
    "a legal hold requires us to keep this data: it is needed for the establishment, exercise "
    "or defence of legal claims or to comply with a legal obligation (Regulation (EU) "
    "2018/1725, Art. 19(3)(b) and (e); GDPR Art. 17(3)(b) and (e)). Where a restriction under "
    "Art. 25 of Regulation (EU) 2018/1725 applies, more detailed reasons may be deferred or "
    "omitted (Art. 25(8))"
)


def subject_reason_of(hold: LegalHold) -> str:
    """The reason the data subject may be told; never the internal reason or case reference."""
    return hold.subject_reason or DEFAULT_SUBJECT_REASON


def scope_of(hold: LegalHold) -> Scope:
    return Scope(kind=HoldScope(hold.scope_kind), value=hold.scope_value)


def restriction_holds(ground: str | None) -> bool:
    """True when a restriction ground is EUDPR Art. 20(1)(b) or (c) (spelled loosely)."""
    if not ground:
        return False
    compact = re.sub(r"[^a-z0-9]", "", ground.lower())
    return compact in {"b", "c"} or compact.endswith(("201b", "201c"))


def target_exists(session: Session, scope: Scope) -> bool:
    """A hold on a mistyped target would protect nothing while looking in force: the subject or
    record exists, the policy is in the registry or governs records, the context has records or
    events."""
    value: Any = scope.value
    if scope.kind is HoldScope.subject:
        return session.get(Subject, uuid.UUID(value)) is not None
    if scope.kind is HoldScope.record:
        return session.get(PersonalRecord, uuid.UUID(value)) is not None
    if scope.kind is HoldScope.policy:
        probes: list[Any] = [
            select(col(ProcessingRecord.reference)).where(col(ProcessingRecord.reference) == value),
            select(col(PersonalRecord.id)).where(col(PersonalRecord.policy) == value),
        ]
    else:
        probes = [
            select(col(PersonalRecord.id)).where(col(PersonalRecord.context) == value),
            select(col(BusinessEvent.id)).where(col(BusinessEvent.context) == value),
        ]
    return any(session.execute(probe.limit(1)).first() is not None for probe in probes)


def lock_for_hold_placement(session: Session) -> None:
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": HOLD_LOCK_KEY})


def lock_for_disposition(session: Session) -> None:
    """Shared side of the hold lock: many batches at once, but never beside a placement."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": HOLD_LOCK_KEY})


def place_hold(
    session: Session,
    *,
    scope: Scope,
    reason: str,
    case_reference: str | None,
    actor: Actor,
    now: datetime,
    subject_reason: str | None = None,
) -> LegalHold:
    if not reason.strip():
        raise InvalidHoldScopeError("a legal hold needs a reason")
    lock_for_hold_placement(session)
    if not target_exists(session, scope):
        name = next(iter(scope.as_dict()))
        raise InvalidHoldScopeError(f"scope {name}: nothing of that name is known")
    hold = LegalHold(
        scope_kind=scope.kind.value,
        scope_value=scope.value,
        reason=reason,
        case_reference=case_reference,
        subject_reason=(subject_reason or "").strip() or None,
        owner=actor.ref,
        placed_at=now,
    )
    session.add(hold)
    session.flush()
    # The scope of a hold on a subject is its pseudonymous id; reasons and case references are
    # free text and stay out of the trail.
    audit.append(
        session,
        action="retention.hold.placed",
        actor=actor.ref,
        now=now,
        subject_id=uuid.UUID(scope.value) if scope.kind is HoldScope.subject else None,
        target=f"legal_hold:{hold.id}",
        details={
            "scope_kind": scope.kind.value,
            **_auditable_scope(scope),
            "subject_reason": "given" if hold.subject_reason else "default",
        },
    )
    return hold


def _auditable_scope(scope: Scope) -> dict[str, str]:
    # Processing-record references and call references are not personal data; ids are pseudonyms.
    return {"scope_value": scope.value}


def get_hold(session: Session, hold_id: uuid.UUID) -> LegalHold:
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise HoldNotFoundError(f"no legal hold {hold_id}")
    return hold


def release_hold(
    session: Session, *, hold_id: uuid.UUID, reason: str, actor: Actor, now: datetime
) -> LegalHold:
    if not reason.strip():
        raise InvalidHoldScopeError("releasing a legal hold needs a reason")
    begin_write(session)
    hold = get_hold(session, hold_id)
    if hold.released_at is not None:
        raise HoldAlreadyReleasedError(f"legal hold {hold_id} was already released")
    hold.released_at = now
    hold.released_by = actor.ref
    hold.release_reason = reason
    session.add(hold)
    session.flush()
    audit.append(
        session,
        action="retention.hold.released",
        actor=actor.ref,
        now=now,
        subject_id=uuid.UUID(hold.scope_value) if hold.scope_kind == HoldScope.subject else None,
        target=f"legal_hold:{hold.id}",
        details={"scope_kind": hold.scope_kind},
    )
    return hold


HOLD_ORDER = Keyset(col(LegalHold.placed_at), col(LegalHold.id))


def list_holds(
    session: Session,
    *,
    active: bool | None = None,
    after: tuple[Any, ...] | None = None,
    limit: int | None = None,
) -> list[LegalHold]:
    query = select(LegalHold)
    if active is True:
        query = query.where(LegalHold.released_at.is_(None))  # type: ignore[union-attr]
    elif active is False:
        query = query.where(LegalHold.released_at.is_not(None))  # type: ignore[union-attr]
    query = HOLD_ORDER.apply(query, after=after, limit=limit)
    return list(session.execute(query).scalars())


def active_holds_for(session: Session, records: Sequence[Any]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Active holds keeping each of `records` (record id → hold ids); absent when none."""
    if not records:
        return {}
    # Active holds are few (tens, not millions): read them all and match in memory rather
    # than sending every batch's ids to the database.
    holds = session.execute(
        select(LegalHold).where(LegalHold.released_at.is_(None))  # type: ignore[union-attr]
    ).scalars()
    index: dict[tuple[str, str], list[uuid.UUID]] = {}
    for hold in holds:
        index.setdefault((hold.scope_kind, hold.scope_value), []).append(hold.id)
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    if not index:
        return found
    for record in records:
        keys: Iterable[tuple[str, str | None]] = (
            (HoldScope.subject.value, str(record.subject_id)),
            (HoldScope.policy.value, record.policy),
            (HoldScope.context.value, record.context),
            (HoldScope.record.value, str(record.id)),
        )
        matched = [h for key in keys if key[1] is not None for h in index.get(key, [])]  # type: ignore[arg-type]
        if matched:
            found[record.id] = matched
    return found


def keeping(session: Session, records: Sequence[Any]) -> dict[uuid.UUID, list[str]]:
    """What keeps each record from disposition: hold ids and `restriction`.

    `records` are `PersonalRecord`s or rows with their `id`, `subject_id`, `policy`, `context`,
    `restricted_at` and `restriction_ground`.
    """
    kept: dict[uuid.UUID, list[str]] = {
        rid: [str(h) for h in hs] for rid, hs in active_holds_for(session, records).items()
    }
    for record in records:
        if record.restricted_at is not None and restriction_holds(record.restriction_ground):
            kept.setdefault(record.id, []).append("restriction")
    return kept
