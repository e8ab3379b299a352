"""The six rights (EUDPR Arts 17-24, GDPR Arts 15-22), each ending in a recorded outcome and a
message to the subject, and the recipients' notices (EUDPR Art. 21, GDPR Art. 19).

The audit trail gets record ids, field names, hold ids and grounds; never values.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from audit_log import service as audit
from dsr import identity as person
from dsr import notifier, otp
from dsr import service as svc
from dsr.errors import InvalidRequestError, NotificationError, RequestStateError
from dsr.models import (
    DsrDisclosure,
    DsrRecipientNotice,
    DsrRequest,
    RequestStatus,
    RequestType,
)
from dsr.notifier import Email
from dsr.policy_info import PolicyCache
from dsr.service import EDPS_NOTE, DsrConfig, close, lock_request, open_intake, tell_subject
from records import crypto
from records import service as records
from records.http import Actor
from records.models import RULE_RESTRICTION_GROUND, PersonalRecord
from retention import external as external_records
from retention import holds
from retention.due import Evaluator, UnknownPolicyError
from retention.models import LegalHold

log = structlog.get_logger(__name__)

BATCH = 500
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ART_20_A = "Art. 20(1)(a)"  # accuracy contested
ART_20_D = "Art. 20(1)(d)"  # objection pending verification
PORTABILITY_NA = (
    "Data portability does not apply: the processing is necessary for a task carried out in the "
    "public interest (Regulation (EU) 2018/1725, Art. 5(1)(a)), and Art. 22(3) excludes "
    "portability for such processing."
)


def _batches(session: Session, subject_id: uuid.UUID) -> Iterator[list[PersonalRecord]]:
    return records.iter_record_batches(session, subject_id=subject_id, batch_size=BATCH)


# --- disclosures and recipients' notices ----------------------------------------------------


def record_disclosures(
    session: Session,
    *,
    record_ids: Sequence[uuid.UUID],
    recipient: str,
    channel: str | None,
    address: str | None,
    disclosed_at: datetime,
    actor: Actor,
    now: datetime,
) -> list[DsrDisclosure]:
    if (channel is None) != (address is None):
        raise InvalidRequestError("give channel and address together, or neither")
    rows = []
    for record_id in record_ids:
        record = records.get_record(session, record_id)
        row = DsrDisclosure(
            record_id=record.id,
            subject_id=record.subject_id,
            recipient=recipient,
            channel=channel,
            address=address,
            disclosed_at=disclosed_at,
            recorded_by=actor.ref,
        )
        session.add(row)
        rows.append(row)
        audit.append(
            session,
            action="dsr.record.disclosed",
            actor=actor.ref,
            now=now,
            subject_id=record.subject_id,
            target=f"personal_record:{record.id}",
            details={"recipient": recipient, "channel": channel},
        )
    session.flush()
    return rows


def notify_recipients(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    record_ids: Sequence[uuid.UUID],
    what: str,
    fields: Sequence[str] = (),
    now: datetime,
) -> list[DsrRecipientNotice]:
    """One notice per recipient the affected records were disclosed to, or why none was sent."""
    if not record_ids:
        return []
    groups: dict[tuple[str, str | None, str | None], set[uuid.UUID]] = defaultdict(set)
    ids = list(record_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for d in session.execute(
            select(DsrDisclosure).where(DsrDisclosure.record_id.in_(chunk))  # type: ignore[attr-defined]
        ).scalars():
            groups[(d.recipient, d.channel, d.address)].add(d.record_id)
    notices = []
    for (recipient, channel, address), affected in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2] or "")
    ):
        payload = {
            "event": f"dsr.{what}",
            "request_id": str(request.id),
            "record_ids": sorted(str(r) for r in affected),
            "fields": sorted(fields),
        }
        status, reason = "sent", None
        try:
            if channel == "email" and address:
                config.notifier.send_email(
                    session,
                    _recipient_email(address, request, what, payload),
                    now=now,
                )
            elif channel == "webhook" and address:
                config.notifier.post_webhook(
                    session, address, payload, request_id=request.id, now=now
                )
            else:
                status, reason = "impossible", "no contact address on file for this recipient"
        except NotificationError as exc:
            status, reason = "impossible", f"delivery failed: {exc.detail}"
        notice = DsrRecipientNotice(
            request_id=request.id,
            recipient=recipient,
            channel=channel,
            status=status,
            reason=reason,
            record_count=len(affected),
            created_at=now,
        )
        session.add(notice)
        notices.append(notice)
        audit.append(
            session,
            action="dsr.recipient.notified" if status == "sent" else "dsr.recipient.not_notified",
            actor="system",
            now=now,
            subject_id=request.subject_id,
            target=f"dsr_request:{request.id}",
            details={"recipient": recipient, "records": len(affected), "what": what},
        )
    session.flush()
    return notices


def _recipient_email(
    address: str, request: DsrRequest, what: str, payload: dict[str, Any]
) -> Email:
    lines = "\n".join(f"- {r}" for r in payload["record_ids"])
    fields = ", ".join(payload["fields"]) or "-"
    return Email(
        to=address,
        subject=f"Data-subject request {request.id}: {what} of disclosed data",
        body=(
            f"Personal data we disclosed to you was subject to {what} under Regulation (EU) "
            f"2018/1725, Art. 21. Please apply the same to your copies.\n\nRecords:\n{lines}\n"
            f"Fields: {fields}\n\nContact the controller for the details.\n"
        ),
        request_id=request.id,
        to_subject=False,
    )


# --- processing -----------------------------------------------------------------------------


def process(
    session: Session,
    *,
    config: DsrConfig,
    request_id: uuid.UUID,
    actor: Actor,
    upheld: bool | None = None,
    reason: str | None = None,
    now: datetime,
) -> DsrRequest:
    """Carry out a verified request and record its outcome."""
    request = lock_request(session, request_id)
    type_ = RequestType(request.type)
    if request.status == RequestStatus.awaiting_assessment.value:
        if type_ is not RequestType.objection or upheld is None:
            raise RequestStateError("the objection awaits the assessment: send `upheld`")
        return _assess_objection(
            session,
            config=config,
            request=request,
            upheld=upheld,
            reason=reason,
            actor=actor,
            now=now,
        )
    if request.status != RequestStatus.verified.value:
        raise RequestStateError(
            f"a request in status {request.status} cannot be processed; it must be verified"
        )
    audit.append(
        session,
        action="dsr.request.processing",
        actor=actor.ref,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"type": request.type},
    )
    if request.subject_id is None:
        return close(
            session,
            config=config,
            request=request,
            outcome=RequestStatus.completed,
            details={"records": 0, "note": "no personal data held about the requester"},
            actor=actor,
            message_subject="Your data-protection request: answer",
            message=(
                f"We processed your {request.type} request {request.id}. We hold no personal "
                f"data about you in this system.\n\n{EDPS_NOTE}\n"
            ),
            now=now,
        )
    # One person, one subject: duplicates the old ingest made are merged in first, so the
    # request covers all of them (and an erasure cannot say "completed" while one remains).
    request.subject_id = person.whole_person(
        session, keyring=config.keyring, subject_id=request.subject_id, actor=actor.ref, now=now
    )
    session.add(request)
    handler = {
        RequestType.access: _access,
        RequestType.portability: _portability,
        RequestType.rectification: _rectification,
        RequestType.erasure: _erasure,
        RequestType.restriction: _restriction,
        RequestType.objection: _objection,
    }[type_]
    return handler(session, config=config, request=request, actor=actor, now=now)


def _issue_token(config: DsrConfig, request: DsrRequest, now: datetime) -> str:
    token = otp.new_token()
    request.package_token_hash = otp.token_digest(token)
    request.package_token_expires_at = now + config.package_token_ttl
    return token


def _link(config: DsrConfig, request: DsrRequest, token: str, fmt: str) -> str:
    base = config.public_base_url.rstrip("/")
    return f"{base}/v1/requests/{request.id}/package?token={token}&format={fmt}"


def _access(
    session: Session, *, config: DsrConfig, request: DsrRequest, actor: Actor, now: datetime
) -> DsrRequest:
    assert request.subject_id is not None
    count = int(
        session.execute(
            select(func.count())
            .select_from(PersonalRecord)
            .where(col(PersonalRecord.subject_id) == request.subject_id)
        ).scalar_one()
    )
    token = _issue_token(config, request, now)
    until = request.package_token_expires_at
    assert until is not None
    return close(
        session,
        config=config,
        request=request,
        outcome=RequestStatus.completed,
        details={"records": count, "package_expires_at": until.isoformat()},
        actor=actor,
        message_subject="Your data-protection request: your data",
        message=(
            f"Your access request {request.id} is answered. It covers {count} record(s).\n\n"
            f"Download your data (valid until {until.isoformat()}):\n"
            f"  readable page: {_link(config, request, token, 'html')}\n"
            f"  JSON: {_link(config, request, token, 'json')}\n\n"
            "The package lists, beside your data, the purposes, categories, recipients, "
            f"retention periods and source of each record, and your rights.\n\n{EDPS_NOTE}\n"
        ),
        now=now,
    )


def _portability(
    session: Session, *, config: DsrConfig, request: DsrRequest, actor: Actor, now: datetime
) -> DsrRequest:
    assert request.subject_id is not None
    policies = PolicyCache(session)
    portable, excluded = 0, 0
    excluded_policies: set[str] = set()
    for batch in _batches(session, request.subject_id):
        for record in batch:
            if policies.allows(record.policy, "portability"):
                portable += 1
            else:
                excluded += 1
                excluded_policies.add(record.policy)
    if portable == 0:
        return close(
            session,
            config=config,
            request=request,
            outcome=RequestStatus.rejected,
            details={
                "ground": "not_applicable",
                "reason": PORTABILITY_NA,
                "policies": sorted(excluded_policies),
                "remedies": EDPS_NOTE,
            },
            actor=actor,
            message_subject="Your data-protection request: portability not applicable",
            message=(
                f"Your portability request {request.id}: not applicable (Art. 22(3)).\n\n"
                f"{PORTABILITY_NA} You may still ask for access to your data.\n\n{EDPS_NOTE}\n"
            ),
            now=now,
        )
    token = _issue_token(config, request, now)
    outcome = RequestStatus.completed if excluded == 0 else RequestStatus.partial
    details: dict[str, Any] = {"records": portable}
    if excluded:
        details.update(
            records_kept=excluded,
            reason=PORTABILITY_NA,
            policies=sorted(excluded_policies),
        )
    return close(
        session,
        config=config,
        request=request,
        outcome=outcome,
        details=details,
        actor=actor,
        message_subject="Your data-protection request: your portable data",
        message=(
            f"Your portability request {request.id}: {portable} record(s) in machine-readable "
            f"form:\n  JSON: {_link(config, request, token, 'json')}\n"
            f"  CSV: {_link(config, request, token, 'csv')}\n"
            + (f"\n{excluded} record(s) are not covered: {PORTABILITY_NA}\n" if excluded else "")
            + f"\n{EDPS_NOTE}\n"
        ),
        now=now,
    )


def _parse_ground(ground: str | None) -> tuple[str, set[str] | None]:
    """`Art. 20(1)(a) [cv,email]` → the ground and the contested fields (None: all)."""
    if not ground:
        return "", None
    head, _, rest = ground.partition("[")
    fields = {f.strip() for f in rest.rstrip("]").split(",") if f.strip()} if rest else None
    return head.strip(), fields


IDENTITY_FIELDS = ("name", "email", "external_id")
ATTRIBUTE_PREFIX = "attributes."


def _rectify_identity(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    changes: dict[str, Any],
    actor: Actor,
    now: datetime,
) -> tuple[set[str], list[dict[str, Any]]]:
    """Rectify the identity on file (`name`, `email`, `external_id`, `attributes.<key>`; null
    removes an attribute): the sealed identity and its indexes change together. An address or
    external id held by another subject is refused, since one address is one subject; the
    refusal's reason stays in the staff view, so nothing about that other person reaches the
    requester. Returns (fields changed, refusals)."""
    assert request.subject_id is not None
    wanted = {
        k: v for k, v in changes.items() if k in IDENTITY_FIELDS or k.startswith(ATTRIBUTE_PREFIX)
    }
    if not wanted:
        return set(), []
    subject = records.get_subject(session, request.subject_id)
    current = records.read_identity(session, keyring=config.keyring, subject=subject)
    refused: list[dict[str, Any]] = []
    email, name, external_id = current.email, current.name, current.external_id
    attributes = dict(current.attributes)
    done: set[str] = set()
    for key, value in sorted(wanted.items()):
        if key == "email":
            if not isinstance(value, str) or _EMAIL_SHAPE.fullmatch(value.strip()) is None:
                refused.append({"field": key, "reason": "not an e-mail address"})
                continue
            email = records.normalise_email(value)
        elif key in ("name", "external_id"):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                refused.append({"field": key, "reason": "must be text"})
                continue
            if key == "name":
                name = value.strip() if value else None
            else:
                external_id = value.strip() if value else None
        else:
            attr = key[len(ATTRIBUTE_PREFIX) :]
            if not attr:
                refused.append({"field": key, "reason": "no attribute named"})
                continue
            if value is None:
                attributes.pop(attr, None)
            else:
                attributes[attr] = value
        done.add(key)
    if not done:
        return set(), refused
    target = records.Identity(
        email=email, name=name, external_id=external_id, attributes=attributes
    )
    try:
        records.set_identity(
            session, keyring=config.keyring, subject=subject, identity=target, now=now
        )
    except records.SubjectIdentityConflictError:
        # Only the fields that clash are refused; retry with the rest.
        clash = {"email"} if email != current.email else set()
        if external_id != current.external_id:
            clash.add("external_id")
        refused += [
            {"field": f, "reason": "held by another data subject"} for f in sorted(clash & done)
        ]
        done -= clash
        target = records.Identity(
            email=current.email if "email" in clash else email,
            name=name,
            external_id=current.external_id if "external_id" in clash else external_id,
            attributes=attributes,
        )
        if not done:
            return set(), refused
        try:
            records.set_identity(
                session, keyring=config.keyring, subject=subject, identity=target, now=now
            )
        except records.SubjectIdentityConflictError:
            refused += [{"field": f, "reason": "held by another data subject"} for f in done]
            return set(), refused
    audit.append(
        session,
        action="dsr.subject.rectified",
        actor=actor.ref,
        now=now,
        subject_id=subject.id,
        target=f"subject:{subject.id}",
        details={"fields": sorted(done), "request": str(request.id)},
    )
    return done, refused


def _rectification(
    session: Session, *, config: DsrConfig, request: DsrRequest, actor: Actor, now: datetime
) -> DsrRequest:
    assert request.subject_id is not None
    intake = open_intake(config.keyring, request)
    changes = (intake.changes if intake else None) or {}
    per_record: dict[str, dict[str, Any]] = {}
    everywhere: dict[str, Any] = {}
    for key, value in changes.items():
        try:
            uuid.UUID(key)
        except ValueError:
            everywhere[key] = value
            continue
        if not isinstance(value, dict):
            raise InvalidRequestError("changes for a record id must be an object of fields")
        per_record[key] = value
    identity_done, identity_refused = _rectify_identity(
        session, config=config, request=request, changes=everywhere, actor=actor, now=now
    )
    cache = records.KeyCache(config.keyring)
    cache.get(session, request.subject_id)  # warm: an empty KeyCache is falsy
    rectified: list[uuid.UUID] = []
    fields_done: set[str] = set(identity_done)
    refused: list[dict[str, Any]] = []
    for batch in _batches(session, request.subject_id):
        for record in batch:
            wanted = {**everywhere, **per_record.pop(str(record.id), {})}
            external = record.external_connector is not None
            if not wanted or (record.payload is None and not external):
                continue
            if external:
                # connectors: the row as it is now at its source (None: unreadable or gone)
                live = external_records.live_fields(config.external, record)
                if live is None:
                    continue
                payload = live
            else:
                payload = records.decrypt_payload(
                    session, keyring=config.keyring, record=record, cache=cache
                )
            applicable = {
                k: v for k, v in wanted.items() if k in payload or str(record.id) in changes
            }
            if not applicable:
                continue
            if record.restricted_at is not None:
                ground, contested = _parse_ground(record.restriction_ground)
                allowed = ground == ART_20_A and (contested is None or set(applicable) <= contested)
                if not allowed:
                    refused.append(
                        {
                            "record_id": str(record.id),
                            "reason": "the record is restricted; only the contested data "
                            "may be rectified",
                        }
                    )
                    continue
            payload.update(applicable)
            if external:
                external_records.rectify(config.external, record, applicable)
            else:
                key_id, plain = cache.get(session, record.subject_id)
                record.payload = crypto.seal(
                    plain,
                    key_id,
                    records.canonical_json(payload),
                    records.payload_binding(record.id, record.subject_id),
                )
            record.updated_at = now
            session.add(record)
            rectified.append(record.id)
            fields_done.update(applicable)
            audit.append(
                session,
                action="dsr.record.rectified",
                actor=actor.ref,
                now=now,
                subject_id=record.subject_id,
                target=f"personal_record:{record.id}",
                details={"fields": sorted(applicable), "request": str(request.id)},
            )
    unknown_fields = sorted(set(everywhere) - fields_done - {r["field"] for r in identity_refused})
    unknown_records = sorted(per_record)
    notify_recipients(
        session,
        config=config,
        request=request,
        record_ids=rectified,
        what="rectification",
        fields=sorted(fields_done),
        now=now,
    )
    problems = bool(refused or identity_refused or unknown_fields or unknown_records)
    changed = bool(rectified or identity_done)
    outcome = (
        RequestStatus.completed
        if changed and not problems
        else RequestStatus.partial
        if changed
        else RequestStatus.rejected
    )
    details: dict[str, Any] = {
        "records_rectified": len(rectified),
        "fields": sorted(fields_done),
    }
    if identity_done:
        details["identity_fields"] = sorted(identity_done)
    if refused or identity_refused:
        details["refused"] = refused + identity_refused
    if unknown_fields:
        details["unknown_fields"] = unknown_fields
    if unknown_records:
        details["unknown_records"] = unknown_records
    if outcome is RequestStatus.rejected:
        details["ground"] = "nothing_to_rectify"
        details["remedies"] = EDPS_NOTE
    return close(
        session,
        config=config,
        request=request,
        outcome=outcome,
        details=details,
        actor=actor,
        message_subject="Your data-protection request: rectification",
        message=(
            f"Your rectification request {request.id}: {len(rectified)} record(s) corrected "
            f"(fields: {', '.join(sorted(fields_done)) or 'none'}).\n"
            + (
                f"Your identity on file corrected: {', '.join(sorted(identity_done))}.\n"
                if identity_done
                else ""
            )
            + (
                "Not corrected automatically: "
                f"{', '.join(sorted(r['field'] for r in identity_refused))}; the controller "
                "will contact you.\n"
                if identity_refused
                else ""
            )
            + (f"Not corrected: {len(refused)} restricted record(s).\n" if refused else "")
            + (f"Fields we do not hold: {', '.join(unknown_fields)}.\n" if unknown_fields else "")
            + f"\n{EDPS_NOTE}\n"
        ),
        now=now,
    )


def _kept_reasons(
    session: Session, batch: Sequence[PersonalRecord], policies: PolicyCache, now: datetime
) -> dict[uuid.UUID, list[str]]:
    kept = holds.keeping(session, batch)
    for record in batch:
        if policies.is_minimum(record.policy, record.policy_version, record.rule_id) and (
            record.due_at is None or record.due_at > now
        ):
            until = record.due_at.isoformat() if record.due_at else "its trigger"
            kept.setdefault(record.id, []).append(f"minimum:{record.rule_id}:{until}")
    return kept


def erase_subject_data(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    actor: Actor,
    now: datetime,
) -> tuple[list[uuid.UUID], list[dict[str, Any]], bool]:
    """Erase what may be erased; returns (erased ids, kept records with reasons, key destroyed)."""
    assert request.subject_id is not None
    subject_id = request.subject_id
    policies = PolicyCache(session)
    holds.lock_for_disposition(session)
    erased: list[uuid.UUID] = []
    kept: list[dict[str, Any]] = []
    to_delete: list[uuid.UUID] = []
    for batch in _batches(session, subject_id):
        reasons = _kept_reasons(session, batch, policies, now)
        for record in batch:
            if record.id in reasons:
                kept.append({"record_id": str(record.id), "reasons": reasons[record.id]})
            else:
                to_delete.append(record.id)
    # connectors: rows in source systems are erased there first; one the source did not
    # erase keeps its record and is answered as kept.
    to_delete, not_erased = external_records.erase_for_subject(
        session, actions=config.external, record_ids=to_delete
    )
    kept += not_erased
    notify_recipients(
        session, config=config, request=request, record_ids=to_delete, what="erasure", now=now
    )
    for start in range(0, len(to_delete), BATCH):
        chunk = to_delete[start : start + BATCH]
        session.execute(
            delete(PersonalRecord)
            .where(col(PersonalRecord.id).in_(chunk))
            .execution_options(synchronize_session=False)
        )
        for record_id in chunk:
            erased.append(record_id)
            audit.append(
                session,
                action="dsr.record.erased",
                actor=actor.ref,
                now=now,
                subject_id=subject_id,
                target=f"personal_record:{record_id}",
                details={"request": str(request.id)},
            )
    key_destroyed = False
    if not kept:
        key = records.destroy_subject_key(session, subject_id=subject_id, now=now)
        key_destroyed = True
        audit.append(
            session,
            action="records.key.destroyed",
            actor=actor.ref,
            now=now,
            subject_id=subject_id,
            target=f"data_key:{key.id}",
            details={"request": str(request.id)},
        )
        # The development outbox must not keep the erased subject's address, codes or links;
        # the answer written next is kept only briefly (`OutboxNotifier.erased_grace`).
        notifier.forget_subjects(session, [subject_id], now=now)
    return erased, kept, key_destroyed


def _describe_kept(session: Session, kept: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Hold ids, and one line per reason as the subject may read it.

    A hold is described by its subject-facing reason only: its internal reason and case
    reference may name an investigation or another party (EUDPR Art. 25; the legal-claims
    exemption of Art. 19(3)(e)), so they never reach the subject."""
    hold_ids = sorted({r for k in kept for r in k["reasons"] if _is_uuid(r)})
    lines: list[str] = []
    for hold_id in hold_ids:
        hold = session.get(LegalHold, uuid.UUID(hold_id))
        text = holds.subject_reason_of(hold) if hold else holds.DEFAULT_SUBJECT_REASON
        lines.append(f"legal hold {hold_id}: {text}")
    others = sorted({r for k in kept for r in k["reasons"] if not _is_uuid(r)})
    for reason in others:
        if reason.startswith("minimum:"):
            _, rule, until = reason.split(":", 2)
            lines.append(f"legal obligation to keep (rule {rule}) until {until}")
        elif reason == "restriction":
            lines.append("restricted at your request to keep it (Art. 20(1)(b) or (c))")
        else:
            lines.append(reason)
    return hold_ids, lines


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _erasure(
    session: Session, *, config: DsrConfig, request: DsrRequest, actor: Actor, now: datetime
) -> DsrRequest:
    erased, kept, key_destroyed = erase_subject_data(
        session, config=config, request=request, actor=actor, now=now
    )
    return _close_erasure(
        session,
        config=config,
        request=request,
        erased=erased,
        kept=kept,
        key_destroyed=key_destroyed,
        actor=actor,
        now=now,
        kind="erasure",
    )


def _close_erasure(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    erased: list[uuid.UUID],
    kept: list[dict[str, Any]],
    key_destroyed: bool,
    actor: Actor,
    now: datetime,
    kind: str,
) -> DsrRequest:
    hold_ids, lines = _describe_kept(session, kept)
    outcome = RequestStatus.partial if kept else RequestStatus.completed
    details: dict[str, Any] = {
        "records_erased": len(erased),
        "records_kept": len(kept),
        "kept": kept,
        "holds": hold_ids,
        "kept_because": lines,
        "key_destroyed": key_destroyed,
    }
    why = "".join(f"  - {line}\n" for line in lines)
    return close(
        session,
        config=config,
        request=request,
        outcome=outcome,
        details=details,
        actor=actor,
        message_subject=f"Your data-protection request: {kind}",
        message=(
            f"Your {kind} request {request.id}: {len(erased)} record(s) erased."
            + (f"\n{len(kept)} record(s) are kept, because:\n{why}" if kept else "\n")
            + f"\n{EDPS_NOTE}\n"
        ),
        now=now,
    )


def _restrict_all(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    ground: str,
    actor: Actor,
    now: datetime,
) -> list[uuid.UUID]:
    assert request.subject_id is not None
    restricted: list[uuid.UUID] = []
    for batch in _batches(session, request.subject_id):
        for record in batch:
            # The subject's ground replaces a rule's storage-only restriction (it may keep the
            # data beyond the rule's deletion: Art. 20(1)(b)/(c)); a ground the subject already
            # has stays.
            if (
                record.restricted_at is not None
                and record.restriction_ground != RULE_RESTRICTION_GROUND
            ):
                continue
            record.restricted_at = now
            record.restriction_ground = ground[:100]
            record.updated_at = now
            session.add(record)
            restricted.append(record.id)
            audit.append(
                session,
                action="dsr.record.restricted",
                actor=actor.ref,
                now=now,
                subject_id=record.subject_id,
                target=f"personal_record:{record.id}",
                details={"ground": ground[:100], "request": str(request.id)},
            )
    notify_recipients(
        session,
        config=config,
        request=request,
        record_ids=restricted,
        what="restriction",
        now=now,
    )
    return restricted


def _restriction_ground(config: DsrConfig, request: DsrRequest) -> str:
    """From the request's `changes`: `{"ground": "a"|"b"|"c"|"d", "fields": [...]}`."""
    intake = open_intake(config.keyring, request)
    raw = (intake.changes if intake else None) or {}
    letter = str(raw.get("ground", "a")).strip().lower()[-1:] or "a"
    if letter not in "abcd":
        letter = "a"
    ground = f"Art. 20(1)({letter})"
    fields = raw.get("fields")
    if letter == "a" and isinstance(fields, list) and fields:
        listed = f"{ground} [{','.join(str(f) for f in fields)}]"
        if len(listed) <= 100:
            return listed
    return ground


def _restriction(
    session: Session, *, config: DsrConfig, request: DsrRequest, actor: Actor, now: datetime
) -> DsrRequest:
    ground = _restriction_ground(config, request)
    restricted = _restrict_all(
        session, config=config, request=request, ground=ground, actor=actor, now=now
    )
    return close(
        session,
        config=config,
        request=request,
        outcome=RequestStatus.completed,
        details={"records_restricted": len(restricted), "ground": ground},
        actor=actor,
        message_subject="Your data-protection request: restriction",
        message=(
            f"Your restriction request {request.id}: {len(restricted)} record(s) are now "
            f"restricted ({ground}): they are only stored, not otherwise processed. We will "
            f"tell you before the restriction is lifted.\n\n{EDPS_NOTE}\n"
        ),
        now=now,
    )


def _objection(
    session: Session, *, config: DsrConfig, request: DsrRequest, actor: Actor, now: datetime
) -> DsrRequest:
    restricted = _restrict_all(
        session, config=config, request=request, ground=ART_20_D, actor=actor, now=now
    )
    request.status = RequestStatus.awaiting_assessment.value
    session.add(request)
    audit.append(
        session,
        action="dsr.objection.pending",
        actor=actor.ref,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"records_restricted": len(restricted)},
    )
    tell_subject(
        session,
        config=config,
        request=request,
        subject="Your data-protection request: objection under assessment",
        body=(
            f"Your objection {request.id} is being assessed. Meanwhile {len(restricted)} "
            f"record(s) are restricted ({ART_20_D}): stored only, not otherwise processed.\n"
        ),
        now=now,
    )
    return request


def _lift(
    session: Session,
    *,
    subject_id: uuid.UUID,
    grounds: set[str],
    actor: Actor,
    now: datetime,
    request: DsrRequest,
) -> int:
    lifted = 0
    evaluator = Evaluator(session, now=now)
    for batch in _batches(session, subject_id):
        for record in batch:
            if record.restricted_at is None:
                continue
            if _parse_ground(record.restriction_ground)[0] not in grounds:
                continue
            # Lifting the subject's restriction does not lift the rule's: a record whose rule
            # allows storage only falls back to that restriction.
            if _rule_restricts(evaluator, record):
                record.restricted_at = now
                record.restriction_ground = RULE_RESTRICTION_GROUND
            else:
                record.restricted_at = None
                record.restriction_ground = None
            record.updated_at = now
            session.add(record)
            lifted += 1
            audit.append(
                session,
                action="dsr.restriction.lifted",
                actor=actor.ref,
                now=now,
                subject_id=subject_id,
                target=f"personal_record:{record.id}",
                details={
                    "request": str(request.id),
                    "still_restricted_by": record.restriction_ground,
                },
            )
    return lifted


def _rule_restricts(evaluator: Evaluator, record: PersonalRecord) -> bool:
    if record.policy_version is None:
        return False
    try:
        _, due = evaluator.decide_record(record, policy_version=record.policy_version)
    except UnknownPolicyError:
        return False  # not in the registry: no rule of it can restrict
    return due.restricted


def _assess_objection(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    upheld: bool,
    reason: str | None,
    actor: Actor,
    now: datetime,
) -> DsrRequest:
    assert request.subject_id is not None
    audit.append(
        session,
        action="dsr.objection.assessed",
        actor=actor.ref,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"upheld": upheld},
    )
    if upheld:
        _lift(
            session,
            subject_id=request.subject_id,
            grounds={ART_20_D},
            actor=actor,
            now=now,
            request=request,
        )
        erased, kept, key_destroyed = erase_subject_data(
            session, config=config, request=request, actor=actor, now=now
        )
        return _close_erasure(
            session,
            config=config,
            request=request,
            erased=erased,
            kept=kept,
            key_destroyed=key_destroyed,
            actor=actor,
            now=now,
            kind="objection (upheld)",
        )
    why = reason or "compelling legitimate grounds for the processing override the objection"
    # Art. 20(3): the subject is told (by the closing message) before the restriction lifts.
    closed = close(
        session,
        config=config,
        request=request,
        outcome=RequestStatus.rejected,
        details={"ground": "compelling_legitimate_grounds", "reason": why, "remedies": EDPS_NOTE},
        actor=actor,
        message_subject="Your data-protection request: objection not upheld",
        message=(
            f"Your objection {request.id} was not upheld: {why}.\nThe restriction of your data "
            f"pending the assessment is lifted after this message.\n\n{EDPS_NOTE}\n"
        ),
        now=now,
    )
    _lift(
        session,
        subject_id=request.subject_id,
        grounds={ART_20_D},
        actor=actor,
        now=now,
        request=request,
    )
    return closed


def lift_restriction(
    session: Session, *, config: DsrConfig, request_id: uuid.UUID, actor: Actor, now: datetime
) -> DsrRequest:
    """Art. 20(3): the first call tells the subject; only a later call lifts the restriction."""
    request = lock_request(session, request_id)
    if request.type != RequestType.restriction.value or request.subject_id is None:
        raise RequestStateError("only a carried-out restriction request can be lifted")
    if request.status not in (RequestStatus.completed.value,):
        raise RequestStateError("the restriction has not been carried out")
    if (request.outcome_details or {}).get("lifted_at"):
        raise RequestStateError("the restriction was already lifted")
    if request.lift_notified_at is None:
        request.lift_notified_at = now
        session.add(request)
        tell_subject(
            session,
            config=config,
            request=request,
            subject="Your data-protection request: restriction to be lifted",
            body=(
                f"The restriction of your data under request {request.id} will be lifted. "
                f"If you disagree, contact the controller.\n\n{EDPS_NOTE}\n"
            ),
            now=now,
        )
        audit.append(
            session,
            action="dsr.restriction.lift_announced",
            actor=actor.ref,
            now=now,
            subject_id=request.subject_id,
            target=f"dsr_request:{request.id}",
        )
        return request
    ground = _parse_ground((request.outcome_details or {}).get("ground"))[0]
    lifted = _lift(
        session,
        subject_id=request.subject_id,
        grounds={ground},
        actor=actor,
        now=now,
        request=request,
    )
    request.outcome_details = {
        **(request.outcome_details or {}),
        "lifted_at": now.isoformat(),
        "records_lifted": lifted,
    }
    session.add(request)
    return request


def public_outcome(request: DsrRequest) -> dict[str, Any] | None:
    """What the requester sees with the code: counts, grounds, reasons — no record contents."""
    if request.outcome_details is None:
        return None
    keep = (
        "records",
        "records_erased",
        "records_kept",
        "records_rectified",
        "records_restricted",
        "kept_because",
        "holds",
        "ground",
        "reason",
        "remedies",
        "fields",
        "note",
    )
    return {k: v for k, v in request.outcome_details.items() if k in keep}


def reject(
    session: Session,
    *,
    config: DsrConfig,
    request_id: uuid.UUID,
    reason: str,
    ground: str,
    actor: Actor,
    now: datetime,
) -> DsrRequest:
    """Refuse a request; an objection refused while its data is restricted pending the
    assessment has that restriction lifted once the subject is told (Art. 20(3))."""
    request = lock_request(session, request_id)
    pending = request.status == RequestStatus.awaiting_assessment.value
    closed = svc.reject(
        session,
        config=config,
        request_id=request_id,
        reason=reason,
        ground=ground,
        actor=actor,
        now=now,
    )
    if pending and request.subject_id is not None:
        _lift(
            session,
            subject_id=request.subject_id,
            grounds={ART_20_D},
            actor=actor,
            now=now,
            request=request,
        )
    return closed
