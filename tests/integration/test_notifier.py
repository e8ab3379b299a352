"""The notifier: real SMTP delivery to a local aiosmtpd server, and the development outbox whose
log line never carries the code or the address."""

from __future__ import annotations

import email
import io
import json
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dsr.errors import NotificationError
from dsr.notifier import Email, SmtpNotifier
from lethe.app import create_app
from lethe.logging import configure_logging
from lethe.settings import Settings
from records.db import utc_now

CANARY = "smtp.canary-5521@example.org"


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def code_for(self, request_id: str) -> str:
        for body in self.bodies_for(request_id):
            found = re.search(r"confirmation code is (\d{6})", body)
            if found:
                return found.group(1)
        raise AssertionError("no code delivered")

    def bodies_for(self, request_id: str) -> list[str]:
        return [body(m) for m in self.messages if m["X-Lethe-Request"] == request_id]


def body(message: Message) -> str:
    raw = message.get_payload(decode=True)
    assert isinstance(raw, bytes)
    return raw.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(host="127.0.0.1", port=_free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings: Settings, mailbox: Mailbox) -> Settings:
    return settings.model_copy(
        update={"smtp_host": mailbox.host, "smtp_port": mailbox.port, "smtp_from": "dpo@lethe.test"}
    )


def test_smtp_notifier_delivers_a_message(mailbox: Mailbox, session: Session) -> None:
    notifier = SmtpNotifier(host=mailbox.host, port=mailbox.port, sender="lethe@lethe.test")
    rid = uuid.uuid4()
    notifier.send_email(
        session, Email(to=CANARY, subject="Hello", body="Body text", request_id=rid), now=utc_now()
    )
    [message] = mailbox.messages
    assert message["To"] == CANARY
    assert message["From"] == "lethe@lethe.test"
    assert message["X-Lethe-Request"] == str(rid)
    assert "Body text" in body(message)


def test_smtp_failure_is_a_503_domain_error_without_the_address(session: Session) -> None:
    notifier = SmtpNotifier(host="127.0.0.1", port=_free_port(), timeout=2)
    with pytest.raises(NotificationError) as caught:
        notifier.send_email(session, Email(to=CANARY, subject="s", body="b"), now=utc_now())
    assert caught.value.status == 503
    assert CANARY not in caught.value.detail


def test_intake_sends_the_code_over_smtp_and_it_verifies(
    smtp_settings: Settings, mailbox: Mailbox
) -> None:
    with TestClient(create_app(smtp_settings)) as client:
        rid = client.post("/v1/requests", json={"type": "access", "email": CANARY}).json()["id"]
        code = mailbox.code_for(rid)
        assert code not in client.get(f"/v1/requests/{rid}/status", params={"code": "x"}).text
        verified = client.post(f"/v1/requests/{rid}/verify", json={"code": code})
    assert verified.json() == {"status": "verified"}
    assert mailbox.messages[0]["To"] == CANARY


def test_outbox_log_line_carries_neither_code_nor_address(
    settings: Settings, engine: Engine
) -> None:
    app = create_app(settings)
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    with TestClient(app) as client:
        rid = client.post("/v1/requests", json={"type": "access", "email": CANARY}).json()["id"]
    from tests.integration.test_requests import code_of

    code = code_of(engine, rid)
    written = buffer.getvalue()
    assert "dsr.notification.queued" in written
    assert code not in written
    assert CANARY not in written


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204 if self.path == "/ok" else 500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def hook_server() -> Iterator[str]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_is_posted_and_a_failing_one_is_a_domain_error(
    hook_server: str, session: Session
) -> None:
    notifier = SmtpNotifier(host="unused.invalid", timeout=5)
    payload = {"event": "dsr.erasure", "record_ids": ["r1"]}
    notifier.post_webhook(session, f"{hook_server}/ok", payload, request_id=None, now=utc_now())
    assert _Hook.received == [payload]
    with pytest.raises(NotificationError):
        notifier.post_webhook(
            session, f"{hook_server}/broken", payload, request_id=None, now=utc_now()
        )
    with pytest.raises(NotificationError):
        notifier.post_webhook(
            session, "file:///etc/passwd", payload, request_id=None, now=utc_now()
        )


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_delivery_verifies_the_server_certificate(
    tmp_path: Path, session: Session
) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    box = Mailbox(host="127.0.0.1", port=_free_port())
    controller = Controller(
        box, hostname="localhost", port=box.port, tls_context=server_ctx, require_starttls=True
    )
    controller.start()
    try:
        untrusted = SmtpNotifier(host="localhost", port=box.port, tls="starttls", timeout=5)
        with pytest.raises(NotificationError):
            untrusted.send_email(session, Email(to=CANARY, subject="s", body="b"), now=utc_now())
        plain = SmtpNotifier(host="localhost", port=box.port, tls="none", timeout=5)
        with pytest.raises(NotificationError):  # the server insists on STARTTLS
            plain.send_email(session, Email(to=CANARY, subject="s", body="b"), now=utc_now())
        trusted = SmtpNotifier(
            host="localhost",
            port=box.port,
            tls="starttls",
            timeout=5,
            ssl_context=ssl.create_default_context(cafile=str(cert)),
        )
        trusted.send_email(session, Email(to=CANARY, subject="s", body="over TLS"), now=utc_now())
    finally:
        controller.stop()
    [message] = box.messages
    assert "over TLS" in body(message)
