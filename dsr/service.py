"""Data-subject requests: intake, identity, deadlines, refusals (DESIGN §6).

Identity first: until the requester proves control of the e-mail address with the one-time
code, nothing about the subject leaves — not even whether the address is known. Intake answers
alike for known and unknown addresses and sends the code to the address given, which is the
address on file whenever there is one (look-up is by exact e-mail).

The six rights are carried out in `dsr.rights`; this module owns the request's life cycle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, select, text
from sqlmodel import Session, col

from audit_log import checkpoints
from audit_log import service as audit
from audit_log.signing import NoteSigner
from dsr import otp
from dsr.client_address import Network, ProxyHeader, bucket_key
from dsr.deadlines import DUE_SOON_DAYS, InstitutionCalendar
from dsr.errors import (
    ExtensionRefusedError,
    IntakeRateLimitedError,
    InvalidRequestError,
    RequestNotFoundError,
    RequestStateError,
    TooManyAttemptsError,
    WrongCodeError,
)
from dsr.models import (
    CLOSED_STATUSES,
    DsrIntakeHit,
    DsrRecipientNotice,
    DsrRequest,
    RequestStatus,
    RequestType,
)
from dsr.notifier import Email, Notifier
from records import crypto
from records.crypto import Keyring
from records.db import begin_write
from records.http import Actor
from records.pagination import Keyset
from retention.external import ExternalActions

log = structlog.get_logger(__name__)

INTAKE_KEY_ID = uuid.uuid5(uuid.NAMESPACE_URL, "https://lethe.dev/keys/dsr-intake/1")
RATE_WINDOW = timedelta(hours=1)

EDPS_NOTE = (
    "You have the right to lodge a complaint with the European Data Protection Supervisor "
    "(edps@edps.europa.eu, https://www.edps.europa.eu) and to seek a judicial remedy before "
    "the Court of Justice of the European Union (Regulation (EU) 2018/1725, Articles 63 and 64)."
)


@dataclass(frozen=True)
class DsrConfig:
    """What the request services need from the composition root (built in `lethe.wiring`)."""

    keyring: Keyring
    notifier: Notifier
    calendar: InstitutionCalendar = field(default_factory=InstitutionCalendar)
    otp_ttl: timedelta = timedelta(minutes=15)
    otp_max_attempts: int = 5
    intake_rate_per_hour: int = 10
    package_token_ttl: timedelta = timedelta(minutes=60)
    public_base_url: str = "http://127.0.0.1:8000"
    # Peers whose forwarding header names the client (rate limits); empty: never read.
    trusted_proxies: tuple[Network, ...] = ()
    proxy_header: ProxyHeader = "x-forwarded-for"
    # Signs a checkpoint after each request completion (DESIGN §7); None: left to the job.
    signer: NoteSigner | None = None
    # Source systems' databases (connectors): access reads external rows live, erasure and
    # rectification act there. None: external records are reported as not reachable.
    external: ExternalActions | None = None


@dataclass(frozen=True)
class Intake:
    """What the requester wrote: sealed in the row, opened only to act on it or to answer."""

    email: str
    details: str | None = None
    changes: dict[str, Any] | None = None


# --- sealing --------------------------------------------------------------------------------


def _binding(request_id: uuid.UUID) -> crypto.Binding:
    return crypto.Binding(
        table="dsr_request", row_id=request_id, column="intake_sealed", subject_id=request_id
    )


def seal_intake(keyring: Keyring, request_id: uuid.UUID, intake: Intake | None) -> bytes:
    data = (
        {}
        if intake is None
        else {"email": intake.email, "details": intake.details, "changes": intake.changes}
    )
    return crypto.seal(
        keyring.purpose_key("dsr-intake/1"),
        INTAKE_KEY_ID,
        json.dumps(data, sort_keys=True).encode(),
        _binding(request_id),
    )


def open_intake(keyring: Keyring, request: DsrRequest) -> Intake | None:
    """The requester's words, or None once they were wiped after the final answer."""
    raw = crypto.open_sealed(
        keyring.purpose_key("dsr-intake/1"),
        INTAKE_KEY_ID,
        request.intake_sealed,
        _binding(request.id),
    )
    data = json.loads(raw)
    if not data:
        return None
    return Intake(email=data["email"], details=data.get("details"), changes=data.get("changes"))


# --- rate limit -----------------------------------------------------------------------------


def _bucket(keyring: Keyring, kind: str, value: str) -> str:
    # Keyed with a purpose key: the stored bucket cannot be reversed by hashing guessed e-mails.
    key = keyring.purpose_key("dsr-intake-rate/1")
    return hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def _lock_buckets(session: Session, buckets: Sequence[str]) -> None:
    """Count and add under a lock per bucket: two intakes from one address counted at once would
    both see the other's hit uncommitted, so both would pass at the limit. PostgreSQL takes a
    transaction advisory lock per bucket, in one order (no deadlock between two intakes sharing
    one of their buckets); on SQLite the writer transaction already serialises (`begin_write`)."""
    begin_write(session)
    if session.get_bind().dialect.name != "postgresql":
        return
    for bucket in sorted(set(buckets)):
        key = int.from_bytes(bytes.fromhex(bucket)[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _check_rate(
    session: Session, config: DsrConfig, *, buckets: Sequence[str], now: datetime
) -> None:
    since = now - RATE_WINDOW
    _lock_buckets(session, buckets)
    session.execute(
        delete(DsrIntakeHit).where(
            DsrIntakeHit.bucket.in_(buckets),  # type: ignore[attr-defined]
            DsrIntakeHit.at < since,  # type: ignore[arg-type]
        )
    )
    for bucket in buckets:
        count = session.execute(
            select(func.count())
            .select_from(DsrIntakeHit)
            .where(DsrIntakeHit.bucket == bucket, DsrIntakeHit.at >= since)  # type: ignore[arg-type]
        ).scalar_one()
        if count >= config.intake_rate_per_hour:
            log.info("dsr.intake.rate_limited")
            raise IntakeRateLimitedError("too many requests; try again later")
    for bucket in buckets:
        session.add(DsrIntakeHit(bucket=bucket, at=now))


# --- intake ---------------------------------------------------------------------------------


def _clean_changes(type_: RequestType, changes: dict[str, Any] | None) -> dict[str, Any] | None:
    if type_ is RequestType.rectification:
        if not changes:
            raise InvalidRequestError("a rectification request needs `changes`")
        return changes
    if type_ is RequestType.restriction and changes:
        # the ground (Art. 20(1) a-d) and, for contested accuracy, the contested fields
        if not set(changes) <= {"ground", "fields"}:
            raise InvalidRequestError("restriction `changes` takes only `ground` and `fields`")
        return changes
    if changes:
        raise InvalidRequestError("`changes` is only for rectification and restriction")
    return None


def file_request(
    session: Session,
    *,
    config: DsrConfig,
    type: RequestType,
    email: str,
    details: str | None,
    changes: dict[str, Any] | None,
    actor: Actor | None,
    client_address: str | None,
    identity_verified: bool = False,
    now: datetime,
) -> DsrRequest:
    """Receive a request: id, receipt time and due date at once; the code goes to the e-mail.

    `actor` None is the public intake (rate-limited per client address and per e-mail); a
    staff actor files on the subject's behalf and may record that identity was established.
    """
    from dsr import subjects  # the records adapter

    changes = _clean_changes(type, changes)
    email = email.strip()
    if actor is None:
        buckets = [_bucket(config.keyring, "mail", email.lower())]
        if client_address:
            buckets.append(_bucket(config.keyring, "addr", bucket_key(client_address)))
        _check_rate(session, config, buckets=buckets, now=now)

    subject_id = subjects.find_subject_id(session, config.keyring, email)
    request = DsrRequest(
        id=uuid.uuid4(),
        type=type.value,
        status=RequestStatus.awaiting_identity.value,
        channel="public" if actor is None else "staff",
        subject_id=subject_id,
        intake_sealed=b"",
        received_at=now,
        original_due_at=config.calendar.due(now),
        due_at=config.calendar.due(now),
        created_by=actor.ref if actor else "public",
    )
    request.intake_sealed = seal_intake(
        config.keyring, request.id, Intake(email=email, details=details, changes=changes)
    )
    if actor is not None and identity_verified:
        request.status = RequestStatus.verified.value
        request.verified_at = now
    session.add(request)
    session.flush()
    audit.append(
        session,
        action="dsr.request.received",
        actor=request.created_by,
        now=now,
        subject_id=subject_id,
        target=f"dsr_request:{request.id}",
        details={
            "type": request.type,
            "channel": request.channel,
            "due_at": audit.format_time(request.due_at),
            "subject_known": subject_id is not None,
        },
    )
    if request.verified_at is not None:
        audit.append(
            session,
            action="dsr.request.verified",
            actor=request.created_by,
            now=now,
            subject_id=subject_id,
            target=f"dsr_request:{request.id}",
            details={"method": "staff"},
        )
    if request.verified_at is None:
        _send_code(session, config=config, request=request, email=email, now=now)
    log.info("dsr.request.received", request_id=str(request.id), type=request.type)
    return request


# --- identity -------------------------------------------------------------------------------
#
# Attempts: with `otp_max_attempts` = N, exactly N wrong codes are answered "wrong" (400); the
# N-th of them locks the request. From then on every code, the right one included, is refused
# with 429 without being compared, so no guess is ever checked after the N-th. A resend sends a
# new code but keeps the count (N wrong codes per request, not per code); an expired code is
# refused (400) without counting, since no code can match while none is valid. Only the staff
# can lift a lock (`reissue_code`, audited).


def _send_code(
    session: Session, *, config: DsrConfig, request: DsrRequest, email: str, now: datetime
) -> None:
    code = otp.new_code()
    request.otp_salt = otp.new_salt()
    request.otp_hash = otp.digest(code, request.otp_salt)
    request.otp_expires_at = now + config.otp_ttl
    session.add(request)
    minutes = int(config.otp_ttl.total_seconds() // 60)
    config.notifier.send_email(
        session,
        Email(
            to=email,
            subject=CODE_MESSAGE_SUBJECT,
            body=(
                f"We received your {request.type} request (reference {request.id}).\n\n"
                f"Your confirmation code is {code}. It is valid for {minutes} minutes.\n"
                "Enter it to confirm that this request is yours. If you did not make this "
                "request, ignore this message.\n"
            ),
            request_id=request.id,
        ),
        now=now,
    )


CODE_MESSAGE_SUBJECT = "Your data-protection request: confirmation code"


def is_locked(request: DsrRequest) -> bool:
    """The one-time code no longer opens the request (verification, or reading its status).

    A request awaiting identity is then in status `locked`; a verified or closed one keeps its
    status, and only its status page stops answering to codes.
    """
    return request.otp_locked_at is not None or request.status == RequestStatus.locked.value


def attempts_left(config: DsrConfig, request: DsrRequest) -> int:
    return max(config.otp_max_attempts - request.otp_attempts, 0)


def _locked_error() -> TooManyAttemptsError:
    return TooManyAttemptsError(
        "too many wrong codes: this request is locked; file a new request or ask the "
        "controller to send a new code"
    )


def resend_code(
    session: Session,
    *,
    config: DsrConfig,
    request_id: uuid.UUID,
    client_address: str | None,
    now: datetime,
) -> DsrRequest:
    """A new code for a request still awaiting identity (the old one expired or was lost).

    Counted against the same hourly intake limits (per e-mail and per client address), so
    resending cannot multiply guesses; the wrong-code count carries over to the new code.
    """
    request = lock_request(session, request_id)
    if is_locked(request) or request.otp_attempts >= config.otp_max_attempts:
        raise _locked_error()
    if request.status != RequestStatus.awaiting_identity.value:
        raise RequestStateError("the request is not awaiting identity verification")
    intake = open_intake(config.keyring, request)
    if intake is None:
        raise RequestStateError("the request is closed")
    buckets = [_bucket(config.keyring, "mail", intake.email.lower())]
    if client_address:
        buckets.append(_bucket(config.keyring, "addr", bucket_key(client_address)))
    _check_rate(session, config, buckets=buckets, now=now)
    _send_code(session, config=config, request=request, email=intake.email, now=now)
    audit.append(
        session,
        action="dsr.request.code_resent",
        actor="requester",
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"attempts": request.otp_attempts},
    )
    return request


def reissue_code(
    session: Session,
    *,
    config: DsrConfig,
    request_id: uuid.UUID,
    actor: Actor,
    now: datetime,
) -> DsrRequest:
    """Staff only: unlock a request (or replace a lost code) and send a fresh code.

    The count starts again, so this is an audited decision of the controller's staff (e.g.
    after the requester called and was identified), never something the public can trigger.
    """
    request = lock_request(session, request_id)
    if request.status not in (RequestStatus.awaiting_identity.value, RequestStatus.locked.value):
        raise RequestStateError("only a request awaiting identity or locked gets a new code")
    intake = open_intake(config.keyring, request)
    if intake is None:
        raise RequestStateError("the request is closed")
    was_locked = is_locked(request)
    previous = request.otp_attempts
    request.status = RequestStatus.awaiting_identity.value
    request.otp_attempts = 0
    request.otp_locked_at = None
    _send_code(session, config=config, request=request, email=intake.email, now=now)
    audit.append(
        session,
        action="dsr.request.code_reissued",
        actor=actor.ref,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"was_locked": was_locked, "previous_attempts": previous},
    )
    log.info("dsr.request.code_reissued", request_id=str(request.id), was_locked=was_locked)
    return request


def get_request(session: Session, request_id: uuid.UUID) -> DsrRequest:
    request = session.get(DsrRequest, request_id)
    if request is None:
        raise RequestNotFoundError(f"no request {request_id}")
    return request


def lock_request(session: Session, request_id: uuid.UUID) -> DsrRequest:
    """The request read afresh with its row locked until the transaction ends: every state
    change checks the status through this, so a second staff member acting on the same request
    waits for the first and then sees what the first did, instead of acting on the status both
    read (PostgreSQL reads do not wait; on SQLite the writer transaction already serialises)."""
    begin_write(session)
    request = get_request(session, request_id)
    session.refresh(request, with_for_update=True)
    return request


def verify(
    session: Session, *, config: DsrConfig, request_id: uuid.UUID, code: str, now: datetime
) -> DsrRequest:
    """Check the code. A wrong code counts an attempt; the count must be committed even
    though the caller answers with an error, so failures are raised as `CodeCheckFailed` by
    `check_code` and turned into a problem by the route without rolling back."""
    request = lock_request(session, request_id)
    if request.status != RequestStatus.awaiting_identity.value:
        # Verified already: the same code answers again, any other is refused (locked: 429).
        check_code(session, config=config, request=request, code=code, now=now, expire=False)
        return request
    check_code(session, config=config, request=request, code=code, now=now, expire=True)
    request.status = RequestStatus.verified.value
    request.verified_at = now
    request.otp_attempts = 0
    session.add(request)
    audit.append(
        session,
        action="dsr.request.verified",
        actor=f"subject:{request.subject_id}" if request.subject_id else "requester",
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"method": "one_time_code"},
    )
    log.info("dsr.request.verified", request_id=str(request.id))
    return request


class CodeCheckFailed(Exception):
    """Carries the error to raise once the failed attempt has been committed."""

    def __init__(self, error: WrongCodeError | TooManyAttemptsError) -> None:
        super().__init__(error.detail)
        self.error = error


def check_code(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    code: str,
    now: datetime,
    expire: bool,
) -> None:
    """Pass, or raise `CodeCheckFailed` (400 wrong or expired, 429 locked); see the top."""
    # Lock the row and read the count afresh: a guess checked while another is uncommitted
    # waits for it (PostgreSQL reads do not), or its write would undo the other's count.
    session.refresh(request, with_for_update=True)
    if is_locked(request) or request.otp_attempts >= config.otp_max_attempts:
        raise CodeCheckFailed(_locked_error())
    expired = expire and request.otp_expires_at is not None and now >= request.otp_expires_at
    if expired:
        _audit_refused_code(session, request, expired=True, now=now)
        raise CodeCheckFailed(
            WrongCodeError(
                "the code has expired; ask for a new one",
                attempts_left=attempts_left(config, request),
            )
        )
    if otp.matches(code, request.otp_salt, request.otp_hash):
        return
    request.otp_attempts += 1
    locked = request.otp_attempts >= config.otp_max_attempts
    if locked:
        request.otp_locked_at = now
        if request.status == RequestStatus.awaiting_identity.value:
            request.status = RequestStatus.locked.value
    session.add(request)
    _audit_refused_code(session, request, expired=False, now=now)
    log.info("dsr.request.code_refused", request_id=str(request.id), attempt=request.otp_attempts)
    if locked:
        audit.append(
            session,
            action="dsr.request.locked",
            actor="requester",
            now=now,
            subject_id=request.subject_id,
            target=f"dsr_request:{request.id}",
            details={"attempts": request.otp_attempts, "status": request.status},
        )
        log.info("dsr.request.locked", request_id=str(request.id))
        raise CodeCheckFailed(
            WrongCodeError(
                "the code is wrong; no attempts are left and the request is now locked",
                attempts_left=0,
            )
        )
    raise CodeCheckFailed(
        WrongCodeError("the code is wrong", attempts_left=attempts_left(config, request))
    )


def _audit_refused_code(
    session: Session, request: DsrRequest, *, expired: bool, now: datetime
) -> None:
    audit.append(
        session,
        action="dsr.request.code_refused",
        actor="requester",
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"attempt": request.otp_attempts, "expired": expired},
    )


# --- reading --------------------------------------------------------------------------------


def is_open(request: DsrRequest) -> bool:
    return request.status not in CLOSED_STATUSES


def is_overdue(request: DsrRequest, now: datetime) -> bool:
    return is_open(request) and request.due_at <= now


REQUEST_ORDER = Keyset(col(DsrRequest.due_at), col(DsrRequest.id))


def list_requests(
    session: Session,
    *,
    status: str | None = None,
    type: str | None = None,
    overdue: bool = False,
    now: datetime,
    after: tuple[Any, ...] | None = None,
    limit: int | None = 500,
) -> list[DsrRequest]:
    query = select(DsrRequest)
    if status:
        query = query.where(DsrRequest.status == status)  # type: ignore[arg-type]
    if type:
        query = query.where(DsrRequest.type == type)  # type: ignore[arg-type]
    if overdue:
        query = query.where(
            DsrRequest.due_at <= now,  # type: ignore[arg-type]
            DsrRequest.status.not_in([s.value for s in CLOSED_STATUSES]),  # type: ignore[attr-defined]
        )
    query = REQUEST_ORDER.apply(query, after=after, limit=limit)
    return list(session.execute(query).scalars())


def deadline_counts(session: Session, *, now: datetime) -> tuple[int, int]:
    """(overdue, due within 7 days) among open requests."""
    open_ = DsrRequest.status.not_in([s.value for s in CLOSED_STATUSES])  # type: ignore[attr-defined]
    overdue = session.execute(
        select(func.count()).select_from(DsrRequest).where(open_, DsrRequest.due_at <= now)  # type: ignore[arg-type]
    ).scalar_one()
    soon = session.execute(
        select(func.count())
        .select_from(DsrRequest)
        .where(
            open_,
            DsrRequest.due_at > now,  # type: ignore[arg-type]
            DsrRequest.due_at <= now + timedelta(days=DUE_SOON_DAYS),  # type: ignore[arg-type]
        )
    ).scalar_one()
    return int(overdue), int(soon)


def notices_of(session: Session, request_id: uuid.UUID) -> list[DsrRecipientNotice]:
    return list(
        session.execute(
            select(DsrRecipientNotice)
            .where(DsrRecipientNotice.request_id == request_id)  # type: ignore[arg-type]
            .order_by(DsrRecipientNotice.created_at, DsrRecipientNotice.recipient)  # type: ignore[arg-type]
        ).scalars()
    )


# --- telling the subject --------------------------------------------------------------------


def subject_address(session: Session, config: DsrConfig, request: DsrRequest) -> str | None:
    """Where to write to the requester: the address they gave, or the one on file."""
    from dsr import subjects

    intake = open_intake(config.keyring, request)
    if intake is not None:
        return intake.email
    if request.subject_id is not None:
        return subjects.email_on_file(session, config.keyring, request.subject_id)
    return None


def tell_subject(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    subject: str,
    body: str,
    now: datetime,
) -> bool:
    to = subject_address(session, config, request)
    if to is None:
        log.warning("dsr.subject.unreachable", request_id=str(request.id))
        return False
    config.notifier.send_email(
        session, Email(to=to, subject=subject, body=body, request_id=request.id), now=now
    )
    return True


# --- deadlines ------------------------------------------------------------------------------


def extend(
    session: Session,
    *,
    config: DsrConfig,
    request_id: uuid.UUID,
    months: int,
    reason: str,
    actor: Actor,
    now: datetime,
) -> DsrRequest:
    """One extension by one or two months (EUDPR Art. 14(3)), only before the original
    deadline, with reasons; the subject is told. The new deadline is the earlier of 1+n
    months from receipt and n months from the end of the original deadline."""
    if months not in (1, 2):
        raise InvalidRequestError("an extension is of one or two months")
    request = lock_request(session, request_id)
    if not is_open(request):
        raise RequestStateError("the request is closed")
    if request.extended_months is not None:
        raise ExtensionRefusedError("the request was already extended once")
    if now >= request.original_due_at:
        raise ExtensionRefusedError(
            "the original deadline has passed; it can no longer be extended"
        )
    request.extended_months = months
    request.extension_reason = reason
    request.extended_at = now
    # The earlier of 1+n months from receipt and n months from the original deadline's end.
    request.due_at = config.calendar.extended(
        request.received_at, request.original_due_at, months=months
    )
    session.add(request)
    audit.append(
        session,
        action="dsr.request.extended",
        actor=actor.ref,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"months": months, "due_at": audit.format_time(request.due_at)},
    )
    tell_subject(
        session,
        config=config,
        request=request,
        subject="Your data-protection request: extended deadline",
        body=(
            f"The time to answer your request {request.id} is extended by {months} "
            f"month(s). The new deadline is {request.due_at.date().isoformat()} "
            f"({request.due_at.isoformat()}).\n\nReason: {reason}\n\n{EDPS_NOTE}\n"
        ),
        now=now,
    )
    return request


# --- closing --------------------------------------------------------------------------------


def close(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    outcome: RequestStatus,
    details: dict[str, Any],
    actor: Actor,
    message_subject: str,
    message: str,
    now: datetime,
) -> DsrRequest:
    """Record the outcome, tell the subject, wipe what they wrote, audit, checkpoint-worthy."""
    request.status = outcome.value
    request.outcome = outcome.value
    request.outcome_details = details
    request.closed_at = now
    tell_subject(
        session, config=config, request=request, subject=message_subject, body=message, now=now
    )
    # Data minimisation: the requester's words are not needed once answered.
    request.intake_sealed = seal_intake(config.keyring, request.id, None)
    session.add(request)
    audit.append(
        session,
        action="dsr.request.closed",
        actor=actor.ref,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"type": request.type, "outcome": outcome.value, **_audit_safe(details)},
    )
    if config.signer is not None:
        session.flush()
        checkpoints.make_checkpoint(session, signer=config.signer, now=now)
    log.info("dsr.request.closed", request_id=str(request.id), outcome=outcome.value)
    return request


def _audit_safe(details: dict[str, Any]) -> dict[str, Any]:
    """Only ids, counts and grounds go to the trail (free-text reasons stay in the row)."""
    keep = (
        "ground",
        "records_erased",
        "records_kept",
        "records_restricted",
        "records_rectified",
        "fields",
        "holds",
        "key_destroyed",
        "records",
    )
    return {k: details[k] for k in keep if k in details}


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
    """Refuse (manifestly unfounded or excessive, Art. 25 restriction) with the ground and
    the right to complain to the EDPS and to a judicial remedy."""
    request = lock_request(session, request_id)
    if not is_open(request):
        raise RequestStateError("the request is closed")
    return close(
        session,
        config=config,
        request=request,
        outcome=RequestStatus.rejected,
        details={"ground": ground, "reason": reason, "remedies": EDPS_NOTE},
        actor=actor,
        message_subject="Your data-protection request: refused",
        message=(
            f"We cannot act on your request {request.id}.\n\nGround: {ground}\n"
            f"Reason: {reason}\n\n{EDPS_NOTE}\n"
        ),
        now=now,
    )
