"""Data-subject requests over HTTP: intake, identity, deadlines, refusals and the six rights.

Development delivery (no SMTP host): messages land in `notification_outbox`, where the tests
read the one-time code and the download link as a subject would read her mailbox.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from dsr.models import NotificationOutbox
from lethe.app import create_app
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work
from tests.conftest import KeyFactory

CANARY_EMAIL = "wilhelmina.canary-4412@example.org"
CANARY_NAME = "Wilhelmina Canary-Quuxley"
CANARY_CV = "CV of Wilhelmina: 12 years of canary-ml-4412 research"
POLICY = "DPR-EC-01488"
CALL = "EC/2024/CNECT/443651"
T0 = datetime(2025, 1, 31, 9, 0, tzinfo=UTC)  # a Friday


def keyring_of(client: TestClient) -> Keyring:
    ring: Keyring = client.app.state.keyring  # type: ignore[attr-defined]
    return ring


def load_policy(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / f"{POLICY}.yaml", actor="test", now=T0
        )


def make_candidate(
    engine: Engine,
    keyring: Keyring,
    *,
    email: str = CANARY_EMAIL,
    records_count: int = 1,
    payload: dict[str, Any] | None = None,
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    ids = []
    with unit_of_work(engine) as s:
        subject = records.create_subject(s, keyring=keyring, email=email, name=CANARY_NAME, now=T0)
        for n in range(records_count):
            record, _ = records.put_record(
                s,
                keyring=keyring,
                subject_id=subject.id,
                policy=POLICY,
                policy_version=1,
                category="application",
                subject_category="candidate",
                collected_at=T0 - timedelta(days=300),
                payload=payload or {"name": CANARY_NAME, "email": email, "cv": CANARY_CV, "n": n},
                payload_hash=uuid.uuid4().hex,
                due=records.Due(
                    due_at=datetime(2025, 3, 27, 23, 0, tzinfo=UTC),
                    rule_id="non-selected-candidates",
                    rule_version=1,
                    action="delete",
                ),
                now=T0,
                context=CALL,
                outcome="not_selected",
            )
            ids.append(record.id)
        sid = subject.id
    return sid, ids


def outbox(engine: Engine, request_id: str | None = None) -> list[NotificationOutbox]:
    with Session(engine) as s:
        query = select(NotificationOutbox).order_by(col(NotificationOutbox.created_at))
        if request_id:
            query = query.where(col(NotificationOutbox.request_id) == uuid.UUID(request_id))
        return list(s.execute(query).scalars())


def code_of(engine: Engine, request_id: str) -> str:
    for message in outbox(engine, request_id):
        found = re.search(r"confirmation code is (\d{6})", message.body)
        if found:
            return found.group(1)
    raise AssertionError("no code in the outbox")


def audit_bodies(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return [e.body for e in s.execute(select(AuditEntry).order_by(AuditEntry.idx)).scalars()]  # type: ignore[arg-type]


def file_and_verify(client: TestClient, engine: Engine, type_: str, **extra: Any) -> str:
    response = client.post("/v1/requests", json={"type": type_, "email": CANARY_EMAIL, **extra})
    assert response.status_code == 202, response.text
    rid: str = response.json()["id"]
    verified = client.post(f"/v1/requests/{rid}/verify", json={"code": code_of(engine, rid)})
    assert verified.status_code == 200, verified.text
    return rid


@pytest.fixture
def frozen() -> Iterator[Any]:
    with freeze_time(T0) as f:
        yield f


# --- intake ---------------------------------------------------------------------------------


def test_intake_answers_202_with_receipt_and_due_date_and_no_code(
    client: TestClient, engine: Engine, frozen: Any
) -> None:
    make_candidate(engine, keyring_of(client))
    response = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "awaiting_identity"
    assert datetime.fromisoformat(body["received_at"]) == T0
    # 31 January + one month clamps to 28 February 2025 (a Friday): ends at midnight Brussels
    assert datetime.fromisoformat(body["due_at"]) == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)
    code = code_of(engine, body["id"])
    assert code not in response.text
    [message] = outbox(engine, body["id"])
    assert message.recipient == CANARY_EMAIL


def test_unknown_and_known_addresses_get_the_same_answer(
    client: TestClient, engine: Engine, frozen: Any
) -> None:
    make_candidate(engine, keyring_of(client))
    known = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
    unknown = client.post("/v1/requests", json={"type": "access", "email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 202
    strip = {"id"}
    assert {k: v for k, v in known.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }
    assert code_of(engine, unknown.json()["id"])  # the code goes out either way


def test_due_date_rolls_past_weekend_and_configured_holiday(
    settings: Settings, engine: Engine
) -> None:
    # 2025-05-31 + 1 month = Monday 30 June, a configured holiday: due at the end of 1 July.
    custom = settings.model_copy(update={"holidays": [datetime(2025, 6, 30).date()]})
    with (
        freeze_time(datetime(2025, 5, 31, 10, tzinfo=UTC)),
        TestClient(create_app(custom)) as client,
    ):
        body = client.post("/v1/requests", json={"type": "access", "email": "a@example.org"}).json()
    assert datetime.fromisoformat(body["due_at"]) == datetime(2025, 7, 1, 22, 0, tzinfo=UTC)


def test_public_intake_is_rate_limited_per_email(settings: Settings, frozen: Any) -> None:
    custom = settings.model_copy(update={"intake_rate_per_hour": 2})
    app = create_app(custom)
    body = {"type": "access", "email": "rate@example.org"}
    answers = []
    for n in range(3):  # three client addresses, one e-mail
        with TestClient(app, client=(f"10.0.0.{n}", 4000)) as client:
            answers.append(client.post("/v1/requests", json=body).status_code)
    assert answers == [202, 202, 429]
    frozen.tick(timedelta(hours=1, seconds=1))
    with TestClient(app, client=("10.0.0.9", 4000)) as client:
        assert client.post("/v1/requests", json=body).status_code == 202


def test_public_intake_is_rate_limited_per_client_address(settings: Settings, frozen: Any) -> None:
    custom = settings.model_copy(update={"intake_rate_per_hour": 2})
    with TestClient(create_app(custom)) as client:
        answers = [
            client.post(
                "/v1/requests", json={"type": "access", "email": f"a{n}@example.org"}
            ).status_code
            for n in range(3)
        ]
    assert answers == [202, 202, 429]


def test_rectification_needs_changes_and_others_refuse_them(client: TestClient) -> None:
    bad = client.post("/v1/requests", json={"type": "rectification", "email": "x@example.org"})
    assert bad.status_code == 422
    also_bad = client.post(
        "/v1/requests", json={"type": "access", "email": "x@example.org", "changes": {"a": 1}}
    )
    assert also_bad.status_code == 422


# --- identity -------------------------------------------------------------------------------


def test_wrong_code_is_400_then_too_many_is_429_even_with_the_right_code(
    client: TestClient, engine: Engine, frozen: Any
) -> None:
    rid = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL}).json()["id"]
    right = code_of(engine, rid)
    wrong = "000000" if right != "000000" else "111111"
    statuses = [
        client.post(f"/v1/requests/{rid}/verify", json={"code": wrong}).status_code
        for _ in range(5)
    ]
    # LETHE_OTP_MAX_ATTEMPTS=5: exactly five wrong codes are answered (the fifth locks)
    assert statuses == [400, 400, 400, 400, 400]
    locked = client.post(f"/v1/requests/{rid}/verify", json={"code": right})
    assert locked.status_code == 429
    assert locked.headers["content-type"] == "application/problem+json"


def test_expired_code_is_refused(client: TestClient, engine: Engine, frozen: Any) -> None:
    rid = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL}).json()["id"]
    frozen.tick(timedelta(minutes=16))
    response = client.post(f"/v1/requests/{rid}/verify", json={"code": code_of(engine, rid)})
    assert response.status_code == 400


def test_right_code_verifies_and_opens_the_status(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    rid = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL}).json()["id"]
    code = code_of(engine, rid)
    assert client.get(f"/v1/requests/{rid}/status").status_code == 400
    assert client.post(f"/v1/requests/{rid}/verify", json={"code": code}).json() == {
        "status": "verified"
    }
    status = client.get(f"/v1/requests/{rid}/status", params={"code": code})
    assert status.status_code == 200
    assert status.json()["status"] == "verified"
    staff = client.get(f"/v1/requests/{rid}/status", headers=auth_headers("controller"))
    assert staff.json()["due_at"] == status.json()["due_at"]


def test_staff_intake_may_record_identity_established(
    client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    public = client.post(
        "/v1/requests",
        json={"type": "access", "email": CANARY_EMAIL, "identity_verified": True},
    )
    assert public.status_code == 422
    staff = client.post(
        "/v1/requests",
        json={"type": "access", "email": CANARY_EMAIL, "identity_verified": True},
        headers=auth_headers("controller"),
    )
    assert staff.status_code == 202
    assert staff.json()["status"] == "verified"
    assert outbox(engine, staff.json()["id"]) == []


# --- deadlines ------------------------------------------------------------------------------


def test_extension_once_before_the_deadline_then_409(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    rid = file_and_verify(client, engine, "access")
    controller = auth_headers("controller")
    extended = client.post(
        f"/v1/requests/{rid}/extend",
        json={"months": 2, "reason": "many records in several systems"},
        headers=controller,
    )
    assert extended.status_code == 200
    # The earlier of 31 January + 3 months (30 April) and 28 February (the original
    # deadline) + 2 months: Monday 28 April 2025
    assert extended.json()["due_at"] == "2025-04-28T22:00:00Z"
    told = [m for m in outbox(engine, rid) if "extended" in m.subject]
    assert told and "2025-04-28" in told[0].body
    again = client.post(
        f"/v1/requests/{rid}/extend", json={"months": 1, "reason": "again"}, headers=controller
    )
    assert again.status_code == 409


def test_extension_after_the_original_deadline_is_409(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    rid = file_and_verify(client, engine, "access")
    frozen.move_to(datetime(2025, 3, 1, 0, 0, tzinfo=UTC))
    late = client.post(
        f"/v1/requests/{rid}/extend",
        json={"months": 1, "reason": "too late now"},
        headers=auth_headers("controller"),
    )
    assert late.status_code == 409


def test_overdue_requests_are_listed_and_counted_in_metrics(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    rid = file_and_verify(client, engine, "access")
    headers = auth_headers("dpo")
    assert client.get("/v1/requests", params={"overdue": "true"}, headers=headers).json() == []
    frozen.move_to(datetime(2025, 2, 24, 9, 0, tzinfo=UTC))
    assert "lethe_dsr_requests_due_soon 1.0" in client.get("/metrics").text
    frozen.move_to(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    listed = client.get("/v1/requests", params={"overdue": "true"}, headers=headers).json()
    assert [r["id"] for r in listed] == [rid]
    assert listed[0]["overdue"] is True
    assert "lethe_dsr_requests_overdue 1.0" in client.get("/metrics").text


def test_request_routes_enforce_roles(
    client: TestClient, engine: Engine, auth_headers: KeyFactory
) -> None:
    rid = client.post("/v1/requests", json={"type": "access", "email": "r@example.org"}).json()[
        "id"
    ]
    assert client.get("/v1/requests").status_code == 401
    assert client.get("/v1/requests", headers=auth_headers("ingest")).status_code == 403
    assert client.get(f"/v1/requests/{rid}", headers=auth_headers("dpo")).status_code == 200
    dpo_process = client.post(f"/v1/requests/{rid}/process", headers=auth_headers("dpo"))
    assert dpo_process.status_code == 403
    package = client.get(f"/v1/requests/{rid}/package", params={"token": "forged"})
    assert package.status_code == 403


# --- refusals -------------------------------------------------------------------------------


def test_refusal_carries_the_ground_and_the_right_to_complain(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    rid = file_and_verify(client, engine, "erasure")
    code = code_of(engine, rid)
    response = client.post(
        f"/v1/requests/{rid}/reject",
        json={"reason": "the fifth identical request this month", "ground": "excessive"},
        headers=auth_headers("controller"),
    )
    assert response.status_code == 200
    assert response.json()["outcome"] == "rejected"
    message = outbox(engine, rid)[-1]
    assert "excessive" in message.body
    assert "European Data Protection Supervisor" in message.body
    assert "judicial remedy" in message.body
    status = client.get(f"/v1/requests/{rid}/status", params={"code": code}).json()
    assert status["outcome_details"]["ground"] == "excessive"


def test_resend_replaces_the_code_and_counts_against_the_intake_limit(
    settings: Settings, engine: Engine, frozen: Any
) -> None:
    custom = settings.model_copy(update={"intake_rate_per_hour": 2})
    with TestClient(create_app(custom)) as client:
        rid = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL}).json()[
            "id"
        ]
        first = code_of(engine, rid)
        frozen.tick(timedelta(minutes=20))  # the first code has expired
        assert client.post(f"/v1/requests/{rid}/resend").status_code == 202
        codes = [
            m for m in (re.search(r"code is (\d{6})", o.body) for o in outbox(engine, rid)) if m
        ]
        second = codes[-1].group(1)
        if first != second:
            stale = client.post(f"/v1/requests/{rid}/verify", json={"code": first})
            assert stale.status_code == 400
        assert client.post(f"/v1/requests/{rid}/resend").status_code == 429
        verified = client.post(f"/v1/requests/{rid}/verify", json={"code": second})
        assert verified.json() == {"status": "verified"}
        assert client.post(f"/v1/requests/{rid}/resend").status_code == 409


def test_nothing_is_processed_before_identity_is_verified(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    make_candidate(engine, keyring_of(client))
    rid = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL}).json()["id"]
    early = client.post(f"/v1/requests/{rid}/process", headers=auth_headers("controller"))
    assert early.status_code == 409
    assert early.headers["content-type"] == "application/problem+json"
    assert CANARY_EMAIL not in early.text
    assert client.get(f"/v1/requests/{rid}/package", params={"token": "x"}).status_code == 403
    unknown = client.get(f"/v1/requests/{uuid.uuid4()}", headers=auth_headers("controller"))
    assert unknown.status_code == 404


def test_an_invalid_email_is_refused_without_echoing_it(client: TestClient) -> None:
    response = client.post(
        "/v1/requests", json={"type": "access", "email": "not-an-address-canary-77"}
    )
    assert response.status_code == 422
    assert "canary-77" not in response.text
