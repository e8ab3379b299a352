"""The development outbox (issue 10): it keeps a one-time code or a package link only while it
is valid, nothing written to a subject once the subject is erased (by a request or by the
nightly purge), and answers about a legal hold quote its subject-facing reason only."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from dsr.jobs import outbox_sweep
from dsr.models import NotificationOutbox
from lethe.logging import configure_logging
from records import service as records
from records.db import unit_of_work, utc_now
from records.http import Actor, Role
from retention import holds, purge
from tests.conftest import KeyFactory
from tests.integration.test_dsr_rights import live_records, process
from tests.integration.test_requests import (
    CALL,
    CANARY_CV,
    CANARY_EMAIL,
    CANARY_NAME,
    POLICY,
    T0,
    audit_bodies,
    code_of,
    file_and_verify,
    frozen,
    keyring_of,
    load_policy,
    make_candidate,
    outbox,
)

__all__ = ["frozen"]

CANARIES = (CANARY_EMAIL, CANARY_NAME, CANARY_CV)
INTERNAL_REASON = "internal: canary-litigant Quuxley v Commission, counsel memo 7731"
CASE = "CASE-canary-0042"


def _everything_in(messages: list[NotificationOutbox]) -> str:
    return "\n".join(f"{m.recipient}\n{m.subject}\n{m.body}" for m in messages)


def _token_of(engine: Engine, rid: str) -> str:
    for message in outbox(engine, rid):
        found = re.search(r"token=([^&\s]+)", message.body)
        if found:
            return found.group(1)
    raise AssertionError("no package link in the outbox")


def test_a_full_erasure_leaves_nothing_of_the_subject_in_the_outbox(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    subject_id, _ = make_candidate(engine, keyring_of(client), records_count=2)
    earlier = file_and_verify(client, engine, "access")
    process(client, earlier, auth_headers("controller"))
    code = code_of(engine, earlier)
    rid = file_and_verify(client, engine, "erasure")
    assert process(client, rid, auth_headers("controller"))["outcome_details"]["key_destroyed"]
    assert live_records(engine, subject_id) == []
    # Only the erasure's own answer is left, and only for a short while.
    [answer] = [m for m in outbox(engine) if CANARY_EMAIL in m.recipient]
    assert answer.request_id == uuid.UUID(rid) and "erased" in answer.body
    assert answer.expires_at is not None and answer.expires_at <= utc_now() + timedelta(hours=1)
    assert code not in _everything_in(outbox(engine))
    frozen.tick(timedelta(hours=1, minutes=1))
    assert outbox_sweep(engine, utc_now())["dropped"] >= 1
    left = _everything_in(outbox(engine))
    assert all(canary not in left for canary in CANARIES)
    trail = "\n".join(audit_bodies(engine))
    written = buffer.getvalue()
    assert "dsr.outbox.swept" in written
    for canary in CANARIES:
        assert canary not in trail and canary not in written


def test_codes_and_package_links_leave_the_outbox_when_they_expire(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    make_candidate(engine, keyring_of(client))
    rid = file_and_verify(client, engine, "access")
    code = code_of(engine, rid)
    process(client, rid, auth_headers("controller"))
    token = _token_of(engine, rid)
    other = file_and_verify(client, engine, "restriction", changes={"ground": "a"})
    process(client, other, auth_headers("controller"))
    answered = [m for m in outbox(engine, other) if "restriction" in m.subject.lower()][-1]

    frozen.tick(timedelta(minutes=16))  # the codes (15 minutes) have expired
    outbox_sweep(engine, utc_now())
    assert code not in _everything_in(outbox(engine))
    assert token in _everything_in(outbox(engine, rid))  # the link is still valid

    frozen.tick(timedelta(minutes=45))  # the link (60 minutes) has expired too
    outbox_sweep(engine, utc_now())
    assert token not in _everything_in(outbox(engine))
    assert client.get(f"/v1/requests/{rid}/package", params={"token": token}).status_code >= 400
    # A message without a secret stays for the developer to read.
    assert answered.id in {m.id for m in outbox(engine, other)}


def test_the_purge_that_empties_a_subject_drops_their_outbox_messages_in_its_batch(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    load_policy(engine)
    keyring = keyring_of(client)
    with unit_of_work(engine) as s:
        subject = records.create_subject(
            s, keyring=keyring, email=CANARY_EMAIL, name=CANARY_NAME, now=T0
        )
        records.put_record(
            s,
            keyring=keyring,
            subject_id=subject.id,
            policy=POLICY,
            policy_version=1,
            category="application",
            subject_category="candidate",
            collected_at=T0 - timedelta(days=700),
            payload={"cv": CANARY_CV},
            payload_hash=uuid.uuid4().hex,
            due=records.Due(
                due_at=T0 - timedelta(days=1),
                rule_id="non-selected-candidates",
                rule_version=1,
                action="delete",
            ),
            now=T0,
            context=CALL,
            outcome="not_selected",
        )
        subject_id = subject.id
    rid = file_and_verify(client, engine, "access")
    process(client, rid, auth_headers("controller"))
    assert any(CANARY_EMAIL in m.recipient for m in outbox(engine))
    ctx = client.app.state.purge_context  # type: ignore[attr-defined]
    run = purge.purge(
        engine,
        dry_run=False,
        trigger="manual",
        actor=Actor(id="key:test-dpo", role=Role.dpo),
        clock=utc_now,
        ctx=ctx,
    )
    assert run.status == "completed"
    assert live_records(engine, subject_id) == []
    # No sweep has run: the batch that destroyed the key dropped the messages itself.
    left = _everything_in(outbox(engine))
    assert all(canary not in left for canary in CANARIES)


def test_an_erasure_answer_quotes_the_holds_subject_reason_only(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    load_policy(engine)
    _, ids = make_candidate(engine, keyring_of(client), records_count=3)
    dpo = auth_headers("dpo")
    told = "Your application is kept while a complaint about the selection is examined."
    placed = client.post(
        "/v1/holds",
        json={
            "scope": {"record_id": str(ids[0])},
            "reason": INTERNAL_REASON,
            "case_reference": CASE,
            "subject_reason": told,
        },
        headers=dpo,
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["subject_reason"] == told
    silent = client.post(
        "/v1/holds",
        json={"scope": {"record_id": str(ids[1])}, "reason": INTERNAL_REASON},
        headers=dpo,
    )
    assert silent.json()["subject_reason"] == holds.DEFAULT_SUBJECT_REASON
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "partial"
    message = outbox(engine, rid)[-1].body
    assert told in message and "legal claims" in message  # the default for the second hold
    status = client.get(f"/v1/requests/{rid}/status", params={"code": code_of(engine, rid)})
    for seen in (message, status.text, str(answered["outcome_details"]["kept_because"])):
        assert INTERNAL_REASON not in seen and CASE not in seen
    trail = "\n".join(audit_bodies(engine))
    for secret in (INTERNAL_REASON, CASE, told, *CANARIES):
        assert secret not in trail


def test_a_subject_reason_of_blanks_is_the_default(
    client: TestClient, engine: Engine, frozen: Any
) -> None:
    _, ids = make_candidate(engine, keyring_of(client))
    with unit_of_work(engine) as s:
        hold = holds.place_hold(
            s,
            scope=holds.Scope.parse({"record_id": str(ids[0])}),
            reason=INTERNAL_REASON,
            case_reference=None,
            subject_reason="   ",
            actor=Actor(id="key:test-dpo", role=Role.dpo),
            now=datetime(2025, 1, 31, tzinfo=UTC),
        )
        assert hold.subject_reason is None
        assert holds.subject_reason_of(hold) == holds.DEFAULT_SUBJECT_REASON
