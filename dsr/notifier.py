"""How Lethe tells people things: e-mail over SMTP and webhooks in production, an outbox table in
development (no SMTP host configured).

A notifier never logs an address, a code or a message body: log lines carry the request id and
the outbox row id only. The development outbox keeps the whole message (that is its purpose: a
developer reads it there), so it must not be used with real data subjects; even so it keeps
nothing longer than needed:

- a message carrying a one-time code or a package link expires with that secret (the request's
  `otp_expires_at` while identity is awaited, its `package_token_expires_at` once answered);
  any other message after `OutboxNotifier.keep`;
- a message to a data subject carries the subject's id, and goes with the subject: at once when a
  request erases them (`forget_subjects`), within the disposition batch that destroys their key
  when the purge empties them (the hook `lethe.wiring` registers), and in any case at the next
  `sweep_outbox` (a scheduled job) once the subject is erased; the answer written to an already
  erased subject is kept only `OutboxNotifier.erased_grace`.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import httpx
import structlog
from sqlalchemy import delete, or_, select
from sqlmodel import Session, col

from dsr.errors import NotificationError
from dsr.models import DsrRequest, NotificationOutbox, RequestStatus
from records.models import Subject

log = structlog.get_logger(__name__)

TlsMode = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str
    request_id: uuid.UUID | None = None
    # The message goes to the requester (their address, their code or link), not to a recipient
    # of their data or to the controller's mailbox.
    to_subject: bool = True


class Notifier(Protocol):
    def send_email(self, session: Session, message: Email, *, now: datetime) -> None: ...

    def post_webhook(
        self,
        session: Session,
        url: str,
        payload: Mapping[str, Any],
        *,
        request_id: uuid.UUID | None,
        now: datetime,
    ) -> None: ...


def _check_webhook_url(url: str) -> None:
    if not url.startswith(("https://", "http://")):
        raise NotificationError("a webhook address must be an http(s) URL")


@dataclass
class OutboxNotifier:
    """Development: messages land in `notification_outbox`, in the caller's transaction."""

    # How long a message without a secret is kept, and an erased subject's last answer.
    keep: timedelta = timedelta(days=30)
    erased_grace: timedelta = timedelta(hours=1)

    def _expiry(
        self, session: Session, message: Email, now: datetime
    ) -> tuple[uuid.UUID | None, datetime]:
        """(the subject the message is addressed to, when the row must go)."""
        until = now + self.keep
        request = (
            session.get(DsrRequest, message.request_id) if message.request_id is not None else None
        )
        if request is None or not message.to_subject:
            return None, until
        # A code is only written while identity is awaited, a package link only when the
        # request is answered; any other message of the request carries neither.
        awaiting = request.status in (RequestStatus.awaiting_identity, RequestStatus.locked)
        live = [
            request.otp_expires_at if awaiting else None,
            None if awaiting else request.package_token_expires_at,
        ]
        secrets = [t for t in live if t is not None and t > now]
        if secrets:
            until = min(until, max(secrets))
        subject_id = request.subject_id
        if subject_id is not None:
            subject = session.get(Subject, subject_id)
            if subject is None or subject.erased_at is not None:
                until = min(until, now + self.erased_grace)
        return subject_id, until

    def send_email(self, session: Session, message: Email, *, now: datetime) -> None:
        subject_id, expires_at = self._expiry(session, message, now)
        row = NotificationOutbox(
            channel="email",
            recipient=message.to,
            subject=message.subject,
            body=message.body,
            request_id=message.request_id,
            subject_id=subject_id,
            expires_at=expires_at,
            created_at=now,
        )
        session.add(row)
        session.flush()
        log.info(
            "dsr.notification.queued",
            channel="email",
            outbox_id=str(row.id),
            request_id=str(message.request_id) if message.request_id else None,
        )

    def post_webhook(
        self,
        session: Session,
        url: str,
        payload: Mapping[str, Any],
        *,
        request_id: uuid.UUID | None,
        now: datetime,
    ) -> None:
        _check_webhook_url(url)
        row = NotificationOutbox(
            channel="webhook",
            recipient=url,
            subject="webhook",
            body=json.dumps(dict(payload), sort_keys=True),
            request_id=request_id,
            expires_at=now + self.keep,
            created_at=now,
        )
        session.add(row)
        session.flush()
        log.info(
            "dsr.notification.queued",
            channel="webhook",
            outbox_id=str(row.id),
            request_id=str(request_id) if request_id else None,
        )


@dataclass
class SmtpNotifier:
    """Production: SMTP (plain, STARTTLS or implicit TLS) and webhooks over HTTPS."""

    host: str
    port: int = 25
    sender: str = "lethe@localhost"
    username: str | None = None
    password: str | None = None
    tls: TlsMode = "none"
    timeout: float = 15.0
    # None: the system's trust store with host-name checking (a private CA can be passed in)
    ssl_context: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.tls == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.tls == "starttls":
            client.ehlo()
            client.starttls(context=self._context())
            client.ehlo()
        return client

    def send_email(self, session: Session, message: Email, *, now: datetime) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        if message.request_id is not None:
            mail["X-Lethe-Request"] = str(message.request_id)
        mail.set_content(message.body)
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(
                "dsr.notification.failed",
                channel="email",
                error_type=type(exc).__name__,
                request_id=str(message.request_id) if message.request_id else None,
            )
            raise NotificationError("the e-mail could not be sent; try again later") from exc
        log.info(
            "dsr.notification.sent",
            channel="email",
            request_id=str(message.request_id) if message.request_id else None,
        )

    def post_webhook(
        self,
        session: Session,
        url: str,
        payload: Mapping[str, Any],
        *,
        request_id: uuid.UUID | None,
        now: datetime,
    ) -> None:
        _check_webhook_url(url)
        try:
            response = httpx.post(url, json=dict(payload), timeout=self.timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning(
                "dsr.notification.failed",
                channel="webhook",
                error_type=type(exc).__name__,
                request_id=str(request_id) if request_id else None,
            )
            raise NotificationError("the webhook could not be delivered") from exc
        log.info(
            "dsr.notification.sent",
            channel="webhook",
            request_id=str(request_id) if request_id else None,
        )


def forget_subjects(
    session: Session, subject_ids: Iterable[uuid.UUID], *, now: datetime | None = None
) -> int:
    """Drop the outbox messages written to these subjects (their address, codes, links, the
    answers); returns how many. Messages to recipients of their data name records by id only
    and stay until they expire."""
    ids = sorted(set(subject_ids))
    dropped = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        their_requests = select(col(DsrRequest.id)).where(col(DsrRequest.subject_id).in_(chunk))
        result = session.execute(
            delete(NotificationOutbox)
            .where(
                or_(
                    col(NotificationOutbox.subject_id).in_(chunk),
                    # rows written before the outbox knew its subjects (0007)
                    (col(NotificationOutbox.subject_id).is_(None))
                    & (col(NotificationOutbox.channel) == "email")
                    & col(NotificationOutbox.request_id).in_(their_requests),
                )
            )
            .execution_options(synchronize_session=False)
        )
        dropped += int(getattr(result, "rowcount", 0) or 0)
    if dropped:
        log.info("dsr.outbox.subjects_forgotten", subjects=len(ids), messages=dropped)
    return dropped


def sweep_outbox(session: Session, *, now: datetime) -> int:
    """Drop expired outbox messages and every message to an erased subject; returns how many."""
    expired = session.execute(
        delete(NotificationOutbox)
        .where(col(NotificationOutbox.expires_at) <= now)
        .execution_options(synchronize_session=False)
    )
    erased = list(
        session.execute(
            select(col(NotificationOutbox.subject_id))
            .join(Subject, col(Subject.id) == col(NotificationOutbox.subject_id))
            .where(col(Subject.erased_at).is_not(None))
            .distinct()
        ).scalars()
    )
    dropped = int(getattr(expired, "rowcount", 0) or 0)
    dropped += forget_subjects(session, [s for s in erased if s is not None], now=now)
    if dropped:
        log.info("dsr.outbox.swept", messages=dropped)
    return dropped


def build_notifier(
    *,
    smtp_host: str | None,
    smtp_port: int = 25,
    smtp_from: str = "lethe@localhost",
    smtp_username: str | None = None,
    smtp_password: str | None = None,
    smtp_tls: TlsMode = "none",
) -> Notifier:
    if not smtp_host:
        return OutboxNotifier()
    return SmtpNotifier(
        host=smtp_host,
        port=smtp_port,
        sender=smtp_from,
        username=smtp_username,
        password=smtp_password,
        tls=smtp_tls,
    )
