"""How Lethe tells people things: e-mail over SMTP and webhooks in production, an outbox table in
development (no SMTP host configured).

A notifier never logs an address, a code or a message body: log lines carry the request id and
the outbox row id only. The development outbox keeps the whole message (that is its purpose: a
developer reads it there), so it must not be used with real data subjects.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal, Protocol

import httpx
import structlog
from sqlmodel import Session

from dsr.errors import NotificationError
from dsr.models import NotificationOutbox

log = structlog.get_logger(__name__)

TlsMode = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str
    request_id: uuid.UUID | None = None


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

    def send_email(self, session: Session, message: Email, *, now: datetime) -> None:
        row = NotificationOutbox(
            channel="email",
            recipient=message.to,
            subject=message.subject,
            body=message.body,
            request_id=message.request_id,
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
