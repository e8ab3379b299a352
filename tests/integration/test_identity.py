"""One e-mail address is one data subject, on every ingest path, and data-subject requests cover
the whole person: their records, and their identity as held (access, rectification, erasure).

Canary values must never reach the audit trail, problem bodies or the log lines.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from typer.testing import CliRunner

from dsr import subjects as dsr_subjects
from dsr.models import NotificationOutbox
from lethe.cli import app as cli_app
from lethe.logging import configure_logging
from lethe.settings import Settings
from records import crypto
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work
from records.models import DataKey, PersonalRecord, Subject
from retention.models import LegalHold
from tests.conftest import KeyFactory
from tests.integration.test_requests import (
    CALL,
    POLICY,
    T0,
    audit_bodies,
    code_of,
    frozen,
    keyring_of,
    load_policy,
    outbox,
)

__all__ = ["frozen"]  # the fixture, re-exported for pytest

EMAIL = "canary-7f3a@example.org"
OTHER_EMAIL = "canary-other-51c2@example.org"
NEW_EMAIL = "canary-new-90d1@example.org"
NAME = "Ottilie Canary-Brandvold"
NEW_NAME = "Ottilie Canary-Hartmann"
EXT = "EPSO-CANARY-7781"
OTHER_EXT = "EPSO-CANARY-9902"
CV = "CV: canary-quasar-3318 research"
CANARIES = (EMAIL, OTHER_EMAIL, NEW_EMAIL, NAME, NEW_NAME, EXT, OTHER_EXT, CV, "P-CANARY-55")


class Logs:
    def __init__(self) -> None:
        self.output = io.StringIO()

    def getvalue(self) -> str:
        """The service's lines; the test client's own (httpx: the URLs it asked for) are not
        what the service writes."""
        return "\n".join(
            line
            for line in self.output.getvalue().splitlines()
            if not json.loads(line).get("logger", "").startswith("httpx")
        )


@pytest.fixture
def logs(client: TestClient) -> Iterator[Logs]:
    """What the service logs while the test runs (the app configured logging first)."""
    captured = Logs()
    configure_logging("DEBUG", "json", stream=captured.output)
    yield captured


def assert_no_canary(*texts: str) -> None:
    joined = "\n".join(texts)
    for canary in CANARIES:
        assert canary not in joined, canary


def add_record(
    s: Session, keyring: Keyring, subject_id: uuid.UUID, *, n: int, held_text: str = CV
) -> uuid.UUID:
    record, _ = records.put_record(
        s,
        keyring=keyring,
        subject_id=subject_id,
        policy=POLICY,
        policy_version=1,
        category="application",
        subject_category="candidate",
        collected_at=T0 - timedelta(days=300),
        payload={"cv": held_text, "n": n},
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
    return record.id


def old_duplicates(engine: Engine, keyring: Keyring) -> tuple[uuid.UUID, uuid.UUID]:
    """Two subjects of one e-mail, as the ingest before 0007 left them (no exact keys)."""
    with unit_of_work(engine) as s:
        first = records.create_subject(
            s, keyring=keyring, email=EMAIL, name=NAME, attributes={"per_id": "P-CANARY-55"}, now=T0
        )
        first.email_key = None
        s.add(first)
        s.flush()
        second = records.create_subject(
            s, keyring=keyring, email=EMAIL, external_id=EXT, now=T0 + timedelta(hours=1)
        )
        second.email_key = None
        second.external_id_key = None
        s.add(second)
        add_record(s, keyring, first.id, n=1)
        add_record(s, keyring, second.id, n=2)
        return first.id, second.id


def live_subjects(engine: Engine) -> list[Subject]:
    with Session(engine) as s:
        return list(s.execute(select(Subject).where(col(Subject.erased_at).is_(None))).scalars())


def file_verified(client: TestClient, engine: Engine, type_: str, **extra: Any) -> str:
    response = client.post("/v1/requests", json={"type": type_, "email": EMAIL, **extra})
    assert response.status_code == 202, response.text
    rid: str = response.json()["id"]
    verified = client.post(f"/v1/requests/{rid}/verify", json={"code": code_of(engine, rid)})
    assert verified.status_code == 200, verified.text
    return rid


def process(client: TestClient, rid: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(f"/v1/requests/{rid}/process", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def package(client: TestClient, rid: str, headers: dict[str, str], fmt: str = "json") -> str:
    response = client.get(f"/v1/requests/{rid}/package?format={fmt}", headers=headers)
    assert response.status_code == 200, response.text
    return response.text


# --- ingest: one address, one subject ---------------------------------------------------------


def test_posting_an_address_again_answers_the_same_subject(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, logs: Logs
) -> None:
    ingest = auth_headers("ingest")
    first = client.post("/v1/subjects", json={"email": EMAIL, "name": NAME}, headers=ingest)
    assert first.status_code == 201
    again = client.post(
        "/v1/subjects",
        json={"email": f"  {EMAIL.upper()} ", "name": NEW_NAME, "external_id": EXT},
        headers=ingest,
    )
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    found = client.get("/v1/subjects", params={"email": EMAIL}, headers=auth_headers("controller"))
    assert [s["id"] for s in found.json()] == [first.json()["id"]]
    # the stored identity stands (rectification changes it); the missing external id is filled
    assert found.json()[0]["name"] == NAME
    assert found.json()[0]["external_id"] == EXT
    assert len(live_subjects(engine)) == 1
    bodies = audit_bodies(engine)
    assert sum('"records.subject.created"' in b for b in bodies) == 1
    assert any('"records.subject.updated"' in b and '"external_id"' in b for b in bodies)
    assert_no_canary(*bodies, logs.getvalue())


def test_an_address_with_another_external_id_is_a_409_without_the_values(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, logs: Logs
) -> None:
    ingest = auth_headers("ingest")
    client.post("/v1/subjects", json={"email": EMAIL, "external_id": EXT}, headers=ingest)
    client.post(
        "/v1/subjects", json={"email": OTHER_EMAIL, "external_id": OTHER_EXT}, headers=ingest
    )
    same_email = client.post(
        "/v1/subjects", json={"email": EMAIL, "external_id": OTHER_EXT + "-x"}, headers=ingest
    )
    same_ext = client.post(
        "/v1/subjects", json={"email": NEW_EMAIL, "external_id": OTHER_EXT}, headers=ingest
    )
    for response in (same_email, same_ext):
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("subject-identity-conflict")
    assert len(live_subjects(engine)) == 2
    assert_no_canary(same_email.text, same_ext.text, *audit_bodies(engine), logs.getvalue())


def test_the_database_refuses_a_second_live_subject_of_one_address(
    engine: Engine, client: TestClient
) -> None:
    keyring = keyring_of(client)
    with unit_of_work(engine) as s:
        first = records.create_subject(s, keyring=keyring, email=EMAIL, now=T0)
        first_id = first.id
    with pytest.raises(IntegrityError), unit_of_work(engine) as s:
        records.create_subject(s, keyring=keyring, email=EMAIL, now=T0)
    with unit_of_work(engine) as s:
        records.destroy_subject_key(s, subject_id=first_id, now=T0)
    # once erased, the person may come back as a new subject
    with unit_of_work(engine) as s:
        again = records.resolve_subject(s, keyring=keyring, email=EMAIL, now=T0)
    assert again.created and again.subject.id != first_id


def test_import_lines_resolve_to_the_subject_of_their_address(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, logs: Logs
) -> None:
    load_policy(engine)
    posted = client.post(
        "/v1/subjects", json={"email": EMAIL, "external_id": EXT}, headers=auth_headers("ingest")
    ).json()["id"]

    def line(email: str, ext: str | None, n: int) -> str:
        subject: dict[str, Any] = {"email": email, "name": NAME}
        if ext:
            subject["external_id"] = ext
        return json.dumps(
            {
                "subject": subject,
                "policy": POLICY,
                "category": "application",
                "subject_category": "candidate",
                "context": CALL,
                "outcome": "not_selected",
                "collected_at": "2024-03-20T10:00:00+01:00",
                "payload": {"cv": CV, "n": n},
            }
        )

    body = "\n".join(
        [
            line(EMAIL.upper(), EXT, 1),  # the posted subject
            line(EMAIL, None, 2),  # the same
            line(EMAIL, OTHER_EXT, 3),  # same address, another external id: refused
            line(OTHER_EMAIL, OTHER_EXT, 4),  # a new person
            line(NEW_EMAIL, OTHER_EXT, 5),  # another address with that person's id: refused
            line(NEW_EMAIL, EXT, 6),  # another address with the first person's id: refused
        ]
    )
    response = client.post(
        "/v1/imports",
        content=body,
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["imported"] == 3
    assert [(f["line"], f["error"].split(":")[0]) for f in result["failed"]] == [
        (3, "subject.external_id"),
        (5, "subject.external_id"),
        (6, "subject.external_id"),
    ]
    with Session(engine) as s:
        owners = sorted(str(r.subject_id) for r in s.execute(select(PersonalRecord)).scalars())
    assert owners.count(posted) == 2
    assert len(live_subjects(engine)) == 2
    assert_no_canary(response.text, *audit_bodies(engine), logs.getvalue())


# --- requests cover the whole person ----------------------------------------------------------


def test_access_covers_old_duplicates_and_shows_the_identity(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, frozen: Any, logs: Logs
) -> None:
    load_policy(engine)
    first, second = old_duplicates(engine, keyring_of(client))
    controller = auth_headers("controller")
    rid = file_verified(client, engine, "access")
    result = process(client, rid, controller)
    assert result["outcome_details"]["records"] == 2

    data = json.loads(package(client, rid, controller))
    assert data["subject_id"] == str(first)
    assert data["identity"] == {
        "email": EMAIL,
        "name": NAME,
        "external_id": EXT,  # from the merged duplicate
        "attributes": {"per_id": "P-CANARY-55"},
    }
    assert sorted(r["data"]["n"] for r in data["records"]) == [1, 2]
    page = package(client, rid, controller, "html")
    for shown in (EMAIL, NAME, EXT, "P-CANARY-55", "Who you are in our records"):
        assert shown in page

    # one subject left, holding both records, readable under its own key
    assert [s.id for s in live_subjects(engine)] == [first]
    with Session(engine) as s:
        assert s.get(Subject, second) is None
        assert s.execute(select(DataKey).where(col(DataKey.subject_id) == second)).first() is None
    listed = client.get(f"/v1/subjects/{first}/records", headers=auth_headers("dpo")).json()
    assert sorted(r["payload"]["n"] for r in listed) == [1, 2]
    merged = [b for b in audit_bodies(engine) if '"records.subject.merged"' in b]
    assert len(merged) == 1 and str(second) in merged[0]
    assert_no_canary(*audit_bodies(engine), logs.getvalue())


def test_erasure_covers_old_duplicates_and_keeps_what_a_hold_on_one_of_them_keeps(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, frozen: Any
) -> None:
    load_policy(engine)
    first, second = old_duplicates(engine, keyring_of(client))
    held = client.post(
        "/v1/holds",
        json={"scope": {"subject_id": str(second)}, "reason": "litigation"},
        headers=auth_headers("dpo"),
    )
    assert held.status_code == 201, held.text
    rid = file_verified(client, engine, "erasure")
    result = process(client, rid, auth_headers("controller"))
    # the hold on the duplicate holds the person: it follows to the surviving subject
    assert result["outcome"] == "partial"
    assert result["outcome_details"]["records_erased"] == 0
    assert result["outcome_details"]["records_kept"] == 2
    with Session(engine) as s:
        hold = s.execute(select(LegalHold)).scalar_one()
        assert hold.scope_value == str(first)
        kept = [r.subject_id for r in s.execute(select(PersonalRecord)).scalars()]
    assert kept == [first, first]
    assert [s.id for s in live_subjects(engine)] == [first]


def test_erasure_of_old_duplicates_erases_them_all_before_saying_completed(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, frozen: Any
) -> None:
    load_policy(engine)
    old_duplicates(engine, keyring_of(client))
    rid = file_verified(client, engine, "erasure")
    result = process(client, rid, auth_headers("controller"))
    assert result["outcome"] == "completed"
    assert result["outcome_details"]["records_erased"] == 2
    assert live_subjects(engine) == []
    with Session(engine) as s:
        assert s.execute(select(PersonalRecord)).first() is None
    found = client.get("/v1/subjects", params={"email": EMAIL}, headers=auth_headers("controller"))
    assert found.json() == []


def test_erasure_of_old_duplicates_forgets_the_outbox_messages_to_each_of_them(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, frozen: Any
) -> None:
    """A message written to the duplicate (its address, a code) goes with the person too: the
    merge re-points it to the surviving subject that the erasure then forgets."""
    load_policy(engine)
    _first, second = old_duplicates(engine, keyring_of(client))
    with unit_of_work(engine) as s:
        to_duplicate = NotificationOutbox(
            channel="email",
            recipient=EMAIL,
            subject="Your data-protection request: confirmation code",
            body="Your confirmation code is 483920.",
            subject_id=second,
            expires_at=T0 + timedelta(days=30),
            created_at=T0,
        )
        s.add(to_duplicate)
        s.flush()
        message_id = to_duplicate.id
    rid = file_verified(client, engine, "erasure")
    assert process(client, rid, auth_headers("controller"))["outcome"] == "completed"
    with Session(engine) as s:
        assert s.get(NotificationOutbox, message_id) is None


# --- rectification of the identity --------------------------------------------------------


def test_rectification_changes_the_identity_and_its_indexes(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, frozen: Any, logs: Logs
) -> None:
    load_policy(engine)
    keyring = keyring_of(client)
    with unit_of_work(engine) as s:
        subject = records.create_subject(
            s, keyring=keyring, email=EMAIL, name=NAME, attributes={"per_id": "P1"}, now=T0
        )
        add_record(s, keyring, subject.id, n=1)
        sid = subject.id
    changes = {
        "name": NEW_NAME,
        "email": NEW_EMAIL,
        "external_id": EXT,
        "attributes.per_id": "P-CANARY-55",
        "attributes.function_group": "FGIV",
    }
    rid = file_verified(client, engine, "rectification", changes=changes)
    result = process(client, rid, auth_headers("controller"))
    assert result["outcome"] == "completed", result
    assert result["outcome_details"]["identity_fields"] == sorted(changes)

    controller = auth_headers("controller")
    assert client.get("/v1/subjects", params={"email": EMAIL}, headers=controller).json() == []
    found = client.get("/v1/subjects", params={"email": NEW_EMAIL}, headers=controller).json()
    assert [(f["id"], f["name"], f["external_id"]) for f in found] == [(str(sid), NEW_NAME, EXT)]
    assert found[0]["attributes"] == {"per_id": "P-CANARY-55", "function_group": "FGIV"}
    by_ext = client.get("/v1/subjects", params={"external_id": EXT}, headers=controller).json()
    assert [f["id"] for f in by_ext] == [str(sid)]
    # the new address is this subject's now: posting it resolves here
    again = client.post("/v1/subjects", json={"email": NEW_EMAIL}, headers=auth_headers("ingest"))
    assert (again.status_code, again.json()["id"]) == (200, str(sid))

    rectified = [b for b in audit_bodies(engine) if '"dsr.subject.rectified"' in b]
    assert len(rectified) == 1
    assert '"attributes.per_id"' in rectified[0] and '"email"' in rectified[0]
    assert_no_canary(*audit_bodies(engine), logs.getvalue())


def test_rectifying_to_another_subjects_address_is_refused_without_naming_it(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, frozen: Any
) -> None:
    load_policy(engine)
    keyring = keyring_of(client)
    with unit_of_work(engine) as s:
        mine = records.create_subject(s, keyring=keyring, email=EMAIL, name=NAME, now=T0)
        records.create_subject(s, keyring=keyring, email=OTHER_EMAIL, now=T0)
        sid = mine.id
    rid = file_verified(
        client, engine, "rectification", changes={"email": OTHER_EMAIL, "name": NEW_NAME}
    )
    result = process(client, rid, auth_headers("controller"))
    assert result["outcome"] == "partial"
    assert result["outcome_details"]["identity_fields"] == ["name"]
    assert result["outcome_details"]["refused"] == [
        {"field": "email", "reason": "held by another data subject"}
    ]
    with Session(engine) as s:
        subject = s.get(Subject, sid)
        assert subject is not None
        identity = records.read_identity(s, keyring=keyring, subject=subject)
    assert (identity.email, identity.name) == (EMAIL, NEW_NAME)
    answer = [m for m in outbox(engine, rid) if "rectification" in m.subject]
    assert answer and all(OTHER_EMAIL not in m.body for m in answer)
    public = client.get(f"/v1/requests/{rid}/status", params={"code": code_of(engine, rid)})
    assert OTHER_EMAIL not in public.text


# --- databases from before the hardening ---------------------------------------------------


def test_merge_duplicates_command_merges_and_indexes_old_subjects(
    client: TestClient, engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = keyring_of(client)
    first, _second = old_duplicates(engine, keyring)
    with unit_of_work(engine) as s:
        alone = records.create_subject(s, keyring=keyring, email=OTHER_EMAIL, now=T0)
        alone.email_key = None
        s.add(alone)
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    result = CliRunner().invoke(cli_app, ["subjects", "merge-duplicates"])
    assert result.exit_code == 0, result.output
    assert "1 duplicate(s) merged" in result.output
    assert_no_canary(result.output)
    subjects = live_subjects(engine)
    assert sorted(s.id for s in subjects) == sorted([first, alone.id])
    assert all(s.email_key is not None for s in subjects)
    with Session(engine) as s:
        moved = s.execute(select(PersonalRecord)).scalars().all()
        assert {r.subject_id for r in moved} == {first}
        assert sorted(
            records.decrypt_payload(s, keyring=keyring, record=r)["n"] for r in moved
        ) == [1, 2]
    # now the database itself holds the line
    with pytest.raises(IntegrityError), unit_of_work(engine) as s:
        records.create_subject(s, keyring=keyring, email=EMAIL, now=T0)
    again = CliRunner().invoke(cli_app, ["subjects", "merge-duplicates"])
    assert again.exit_code == 0 and "0 subject(s) checked" in again.output


def import_line(email: str, ext: str | None, n: int) -> str:
    subject: dict[str, Any] = {"email": email, "name": NAME}
    if ext:
        subject["external_id"] = ext
    return json.dumps(
        {
            "subject": subject,
            "policy": POLICY,
            "category": "application",
            "subject_category": "candidate",
            "context": CALL,
            "outcome": "not_selected",
            "collected_at": "2024-03-20T10:00:00+01:00",
            "payload": {"cv": CV, "n": n},
        }
    )


def post_import(client: TestClient, headers: dict[str, str], *lines: str) -> dict[str, Any]:
    response = client.post(
        "/v1/imports",
        content="\n".join(lines),
        headers={**headers, "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# --- look-ups by exact key ----------------------------------------------------------------


def test_finding_a_subject_by_address_or_external_id_decrypts_no_identity(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact keys decide, even beside a subject in the same blind-index bucket (the bulk
    import used to decrypt every candidate of a bucket, one key unwrap each)."""
    load_policy(engine)
    keyring = keyring_of(client)
    ingest = auth_headers("ingest")
    posted = client.post(
        "/v1/subjects", json={"email": EMAIL, "external_id": EXT}, headers=ingest
    ).json()["id"]
    bucket = keyring.blind_index(records.EMAIL, EMAIL)
    neighbour = next(
        e
        for e in (f"canary-n{i}@example.org" for i in range(200_000))
        if keyring.blind_index(records.EMAIL, e) == bucket
    )
    client.post("/v1/subjects", json={"email": neighbour}, headers=ingest)
    opened: list[bytes] = []
    real_open = crypto.open_sealed

    def counting_open(*args: Any, **kwargs: Any) -> bytes:
        opened.append(b"")
        return real_open(*args, **kwargs)

    monkeypatch.setattr("records.service.open_sealed", counting_open)

    with Session(engine) as s:
        matches = records.find_subject_matches(s, keyring=keyring, email=f" {EMAIL.upper()}")
        assert [str(m.id) for m in matches] == [posted]
        by_email = records.find_subjects_by_emails(s, keyring=keyring, emails=[EMAIL])
        assert [str(m.id) for m in by_email[EMAIL]] == [posted]
        by_ext = records.find_subjects_by_external_ids(s, keyring=keyring, external_ids=[EXT])
        assert [str(m.id) for m in by_ext[EXT]] == [posted]
        assert str(dsr_subjects.find_subject_id(s, keyring, EMAIL)) == posted
    again = client.post("/v1/subjects", json={"email": EMAIL, "external_id": EXT}, headers=ingest)
    assert again.status_code == 200 and again.json()["id"] == posted
    refused = client.post(
        "/v1/subjects", json={"email": EMAIL, "external_id": OTHER_EXT}, headers=ingest
    )
    assert refused.status_code == 409
    result = post_import(client, ingest, import_line(EMAIL, EXT, 1), import_line(NEW_EMAIL, EXT, 2))
    assert result["imported"] == 1
    assert [(f["line"], f["error"].split(":")[0]) for f in result["failed"]] == [
        (2, "subject.external_id")
    ]
    assert opened == []

    # Showing the identity decrypts the match, and only it.
    shown = client.get("/v1/subjects", params={"email": EMAIL}, headers=auth_headers("dpo"))
    assert [(f["id"], f["external_id"]) for f in shown.json()] == [(posted, EXT)]
    assert len(opened) == 1


def test_a_subject_stored_before_0007_is_found_until_its_first_ingest_keys_it(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    """Without `lethe subjects merge-duplicates`, a subject with no exact keys is still one
    person to every look-up (through its blind index), and the next single ingest keys it."""
    load_policy(engine)
    keyring = keyring_of(client)
    with unit_of_work(engine) as s:
        old = records.create_subject(
            s, keyring=keyring, email=EMAIL, name=NAME, external_id=EXT, now=T0
        )
        old.email_key = None
        old.external_id_key = None
        s.add(old)
        old_id = str(old.id)
    dpo, ingest = auth_headers("dpo"), auth_headers("ingest")
    for query in ({"email": EMAIL.upper()}, {"external_id": EXT}):
        found = client.get("/v1/subjects", params=query, headers=dpo).json()
        assert [(f["id"], f["name"]) for f in found] == [(old_id, NAME)]
    with Session(engine) as s:
        assert str(dsr_subjects.find_subject_id(s, keyring, EMAIL)) == old_id

    result = post_import(
        client,
        ingest,
        import_line(EMAIL, EXT, 1),
        import_line(EMAIL, OTHER_EXT, 2),  # the stored subject has another external id
        import_line(NEW_EMAIL, EXT, 3),  # the stored subject's external id, another address
    )
    assert result["imported"] == 1
    assert [f["line"] for f in result["failed"]] == [2, 3]
    assert [str(s.id) for s in live_subjects(engine)] == [old_id]
    with Session(engine) as s:
        assert [str(r.subject_id) for r in s.execute(select(PersonalRecord)).scalars()] == [old_id]

    again = client.post("/v1/subjects", json={"email": EMAIL}, headers=ingest)
    assert again.status_code == 200 and again.json()["id"] == old_id
    [subject] = live_subjects(engine)
    assert subject.email_key == records.exact_key(keyring, records.EMAIL, EMAIL)
    assert subject.external_id_key == records.exact_key(keyring, records.EXTERNAL_ID, EXT)
    found = client.get("/v1/subjects", params={"external_id": EXT}, headers=dpo).json()
    assert [f["id"] for f in found] == [old_id]


@pytest.mark.postgres_only
def test_two_ingests_racing_for_one_address_make_one_subject(
    engine: Engine, client: TestClient
) -> None:
    """The second insert waits on the unique index, fails once the first commits, and resolves
    to the winner instead of creating a second subject."""
    keyring = keyring_of(client)
    first_inserted = threading.Event()
    results: dict[str, records.Resolved] = {}

    def first() -> None:
        with unit_of_work(engine) as s:
            results["first"] = records.resolve_subject(s, keyring=keyring, email=EMAIL, now=T0)
            first_inserted.set()
            time.sleep(0.5)  # the second ingest looks up (nothing committed) and inserts now

    def second() -> None:
        first_inserted.wait(5)
        with unit_of_work(engine) as s:
            results["second"] = records.resolve_subject(s, keyring=keyring, email=EMAIL, now=T0)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results["first"].created and not results["second"].created
    assert results["second"].subject.id == results["first"].subject.id
    assert len(live_subjects(engine)) == 1
