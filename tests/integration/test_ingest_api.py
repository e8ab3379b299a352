"""Subjects, records and events through the API, with DPR-EC-01488 loaded (API.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from audit_log.models import AuditEntry
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import unit_of_work
from retention import demo, ingest
from tests.conftest import KeyFactory

CALL = "EC/2024/CNECT/443651"
CANARY_EMAIL = "Canary.Candidate-7Q@Example.EU"
CANARY_NAME = "Canary Name Zx81"
CANARY_CV = "CANARY-CV-TEXT-4411"


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s,
            path_or_text=registry_dir() / "DPR-EC-01488.yaml",
            actor="test",
            now=datetime(2024, 1, 1, tzinfo=UTC),
        )
    return engine


def _subject(client: TestClient, headers: dict[str, str], email: str = CANARY_EMAIL) -> str:
    external_id = "EPSO-0001" if email == CANARY_EMAIL else f"EPSO-{uuid.uuid4().hex[:6]}"
    response = client.post(
        "/v1/subjects",
        json={"email": email, "name": CANARY_NAME, "external_id": external_id},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _record(subject_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject_id": subject_id,
        "policy": "DPR-EC-01488",
        "category": "application",
        "subject_category": "candidate",
        "context": CALL,
        "outcome": "not_selected",
        "collected_at": "2024-03-20T09:30:00+01:00",
        "payload": {"cv": CANARY_CV, "languages": ["fr", "en"]},
    }
    body.update(overrides)
    return body


def test_a_subject_is_found_by_its_email_in_any_case(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    _subject(client, auth_headers("ingest"), email="someone.else@example.eu")
    found = client.get(
        "/v1/subjects",
        params={"email": "  canary.candidate-7q@example.eu "},
        headers=auth_headers("controller"),
    )
    assert found.status_code == 200
    assert [s["id"] for s in found.json()] == [subject_id]
    assert found.json()[0]["name"] == CANARY_NAME
    by_external = client.get(
        "/v1/subjects", params={"external_id": "EPSO-0001"}, headers=auth_headers("dpo")
    )
    assert [s["id"] for s in by_external.json()] == [subject_id]
    none = client.get(
        "/v1/subjects", params={"email": "nobody@example.eu"}, headers=auth_headers("dpo")
    )
    assert none.json() == []


def test_ingest_may_create_but_not_read_subjects(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    _subject(client, auth_headers("controller"))
    response = client.get(
        "/v1/subjects", params={"email": CANARY_EMAIL}, headers=auth_headers("ingest")
    )
    assert response.status_code == 403
    assert client.post("/v1/subjects", json={"email": "a@b.eu"}).status_code == 401
    assert (
        client.post(
            "/v1/subjects", json={"email": "a@b.eu"}, headers=auth_headers("auditor")
        ).status_code
        == 403
    )


def test_a_record_before_the_call_closes_has_no_due_date_then_gets_one(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    created = client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["due_at"] is None
    assert body["status"] == "active"
    assert body["rule_id"] == "non-selected-candidates"

    event = client.post(
        "/v1/events",
        json={"type": "call.closed", "context": CALL, "occurred_at": "2024-03-27T12:00:00+01:00"},
        headers=auth_headers("ingest"),
    )
    assert event.status_code == 201, event.text
    assert event.json()["affected_records"] == 1

    read = client.get(f"/v1/records/{body['id']}", headers=auth_headers("controller"))
    assert read.status_code == 200
    record = read.json()
    # P1Y after 2024-03-27 12:00 Brussels: the deletion is due on 2025-03-27 (end of that day).
    assert record["due_at"] is not None
    due = datetime.fromisoformat(record["due_at"])
    assert due.tzinfo is not None
    assert due.astimezone(UTC).date() in (
        datetime(2025, 3, 27).date(),
        datetime(2025, 3, 28).date(),
    )
    assert record["rule_id"] == "non-selected-candidates"
    assert record["action"] == "delete"
    assert record["payload"] == {"cv": CANARY_CV, "languages": ["fr", "en"]}


def test_an_event_for_another_call_touches_nothing(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    rec = client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    event = client.post(
        "/v1/events",
        json={
            "type": "call.closed",
            "context": "EC/2024/CNECT/443650",
            "occurred_at": "2024-03-27T12:00:00+01:00",
        },
        headers=auth_headers("controller"),
    )
    assert event.json()["affected_records"] == 0
    read = client.get(f"/v1/records/{rec.json()['id']}", headers=auth_headers("dpo"))
    assert read.json()["due_at"] is None


def test_a_corrected_event_moves_the_due_date(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    rec = client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    headers = auth_headers("ingest")
    for occurred in ("2024-03-27T12:00:00+01:00", "2024-04-10T12:00:00+02:00"):
        client.post(
            "/v1/events",
            json={"type": "call.closed", "context": CALL, "occurred_at": occurred},
            headers=headers,
        )
    due = client.get(f"/v1/records/{rec.json()['id']}", headers=auth_headers("dpo")).json()
    assert datetime.fromisoformat(due["due_at"]) > datetime(2025, 4, 9, tzinfo=UTC)


def test_the_same_id_and_body_is_200_and_another_body_is_409(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    record_id = str(uuid.uuid4())
    body = _record(subject_id, id=record_id)
    first = client.post("/v1/records", json=body, headers=auth_headers("ingest"))
    again = client.post("/v1/records", json=body, headers=auth_headers("ingest"))
    # The same instant written with another offset is the same body.
    shifted = client.post(
        "/v1/records",
        json={**body, "collected_at": "2024-03-20T08:30:00Z"},
        headers=auth_headers("ingest"),
    )
    other = client.post(
        "/v1/records",
        json={**body, "payload": {"cv": "CANARY-OTHER-CV-9931"}},
        headers=auth_headers("ingest"),
    )
    assert (first.status_code, again.status_code, shifted.status_code) == (201, 200, 200)
    assert again.json()["id"] == record_id
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert "CANARY-OTHER-CV-9931" not in other.text and CANARY_CV not in other.text


def test_a_naive_timestamp_is_422_without_echoing_values(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    response = client.post(
        "/v1/records",
        json=_record(subject_id, collected_at="2024-03-20T09:30:00"),
        headers=auth_headers("ingest"),
    )
    assert response.status_code == 422
    assert "collected_at" in response.json()["detail"]
    assert CANARY_CV not in response.text
    event = client.post(
        "/v1/events",
        json={"type": "call.closed", "context": CALL, "occurred_at": "2024-03-27T12:00:00"},
        headers=auth_headers("ingest"),
    )
    assert event.status_code == 422


def test_an_unknown_subject_or_policy_is_refused(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    missing = client.post(
        "/v1/records", json=_record(str(uuid.uuid4())), headers=auth_headers("ingest")
    )
    assert missing.status_code == 404
    subject_id = _subject(client, auth_headers("ingest"))
    unknown = client.post(
        "/v1/records", json=_record(subject_id, policy="DPR-XX-9"), headers=auth_headers("ingest")
    )
    assert unknown.status_code == 422
    assert "DPR-XX-9" in unknown.json()["detail"]


def test_invited_candidates_are_handed_over_to_dpr_02054(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    response = client.post(
        "/v1/records", json=_record(subject_id, outcome="invited"), headers=auth_headers("ingest")
    )
    assert response.status_code == 201
    assert response.json()["rule_id"] == "invited-or-selected-candidates"
    record = client.get(f"/v1/records/{response.json()['id']}", headers=auth_headers("dpo")).json()
    assert record["action"] == "handover"
    assert record["handover_to"] == "DPR-02054"


def test_a_subjects_records_come_back_decrypted(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    other_id = _subject(client, auth_headers("ingest"), email="other@example.eu")
    for category in ("identity", "application"):
        client.post(
            "/v1/records",
            json=_record(subject_id, category=category),
            headers=auth_headers("ingest"),
        )
    client.post("/v1/records", json=_record(other_id), headers=auth_headers("ingest"))
    listed = client.get(f"/v1/subjects/{subject_id}/records", headers=auth_headers("controller"))
    assert listed.status_code == 200
    assert sorted(r["category"] for r in listed.json()) == ["application", "identity"]
    assert all(r["payload"]["cv"] == CANARY_CV for r in listed.json())
    assert (
        client.get(
            f"/v1/subjects/{uuid.uuid4()}/records", headers=auth_headers("controller")
        ).status_code
        == 404
    )


def test_ingest_is_audited_with_ids_only(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    rec = client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    client.post(
        "/v1/events",
        json={"type": "call.closed", "context": CALL, "occurred_at": "2024-03-27T12:00:00+01:00"},
        headers=auth_headers("ingest"),
    )
    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.idx)).all()  # type: ignore[arg-type]
    actions = [e.action for e in entries]
    assert "records.subject.created" in actions
    assert "records.record.ingested" in actions
    assert "records.event.recorded" in actions
    bodies = "\n".join(e.body for e in entries)
    assert rec.json()["id"] in bodies
    for canary in (CANARY_EMAIL, CANARY_EMAIL.lower(), CANARY_NAME, CANARY_CV, "EPSO-0001"):
        assert canary not in bodies


def test_no_personal_data_is_stored_in_clear(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, engine: Engine
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    with engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM subject")).all()) + repr(
            conn.execute(text("SELECT * FROM personal_record")).all()
        )
    assert subject_id.replace("-", "") in dump.replace("-", "")
    for canary in (CANARY_EMAIL.lower(), CANARY_NAME, CANARY_CV, "EPSO-0001"):
        assert canary not in dump


def test_an_erased_subjects_record_is_410_and_the_erasure_is_audited(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    subject_id = _subject(client, auth_headers("ingest"))
    rec = client.post("/v1/records", json=_record(subject_id), headers=auth_headers("ingest"))
    with unit_of_work(loaded) as s:
        key_id = ingest.erase_subject_key(
            s, subject_id=uuid.UUID(subject_id), actor="test", now=datetime.now(UTC)
        )
    gone = client.get(f"/v1/records/{rec.json()['id']}", headers=auth_headers("dpo"))
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"
    assert CANARY_CV not in gone.text
    found = client.get(
        "/v1/subjects", params={"email": CANARY_EMAIL}, headers=auth_headers("controller")
    )
    assert found.json() == []
    entry = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "records.key.destroyed")  # type: ignore[arg-type]
    ).one()
    assert entry.target == f"data_key:{key_id}"
    assert str(entry.subject_id) == subject_id


def test_the_demo_candidates_are_found_by_email_with_their_decrypted_cv(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, settings: Settings
) -> None:
    keyring = Keyring.load_or_create(settings.effective_kek_file)
    demo.run_demo(
        engine, keyring=keyring, candidates=25, now=datetime(2024, 4, 2, tzinfo=UTC), batch_size=40
    )
    lines = [line for line in demo.candidate_lines(25) if line["category"] == "application"]
    wanted = lines[17]
    found = client.get(
        "/v1/subjects",
        params={"email": wanted["subject"]["email"]},
        headers=auth_headers("controller"),
    )
    assert found.status_code == 200
    [subject] = found.json()
    assert subject["name"] == wanted["subject"]["name"]
    listed = client.get(f"/v1/subjects/{subject['id']}/records", headers=auth_headers("dpo"))
    assert listed.status_code == 200
    [application] = [r for r in listed.json() if r["category"] == "application"]
    assert application["payload"]["cv"] == wanted["payload"]["cv"]
    assert application["context"] == demo.CALL
