"""Restricted records (issue 10): materialised at ingest from a `restrict_processing` rule, by
restriction and objection requests and their lift; readable among staff by the DPO only, and
still in the subject's own access package."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from records.db import unit_of_work
from records.models import RULE_RESTRICTION_GROUND, PersonalRecord
from tests.conftest import KeyFactory
from tests.integration.test_dsr_rights import assert_no_canary_in_audit, link_of, process
from tests.integration.test_requests import (
    CALL,
    CANARY_CV,
    CANARY_EMAIL,
    CANARY_NAME,
    POLICY,
    audit_bodies,
    file_and_verify,
    frozen,
    load_policy,
)

__all__ = ["frozen"]


def _subject(client: TestClient, headers: dict[str, str]) -> str:
    response = client.post(
        "/v1/subjects", json={"email": CANARY_EMAIL, "name": CANARY_NAME}, headers=headers
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def _record(
    client: TestClient, headers: dict[str, str], subject_id: str, outcome: str, n: int = 0
) -> str:
    response = client.post(
        "/v1/records",
        json={
            "subject_id": subject_id,
            "policy": POLICY,
            "category": "application",
            "subject_category": "candidate",
            "context": CALL,
            "outcome": outcome,
            "collected_at": "2024-03-20T09:30:00+01:00",
            "payload": {"cv": CANARY_CV, "n": n},
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _stored(engine: Engine, record_id: str) -> PersonalRecord:
    with Session(engine) as s:
        record = s.get(PersonalRecord, uuid.UUID(record_id))
        assert record is not None
        return record


def _candidate(client: TestClient, engine: Engine, auth_headers: KeyFactory) -> dict[str, str]:
    """A candidate with one not-invited (rule-restricted) and one not-selected application."""
    load_policy(engine)
    ingest = auth_headers("ingest")
    subject_id = _subject(client, ingest)
    return {
        "subject": subject_id,
        "not_invited": _record(client, ingest, subject_id, "not_invited", 1),
        "not_selected": _record(client, ingest, subject_id, "not_selected", 2),
    }


def test_a_restrict_processing_rule_restricts_the_record_at_ingest(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    restricted = _stored(engine, ids["not_invited"])
    assert restricted.restricted_at is not None
    assert restricted.restriction_ground == RULE_RESTRICTION_GROUND
    free = _stored(engine, ids["not_selected"])
    assert free.restricted_at is None and free.restriction_ground is None


def test_a_bulk_import_restricts_like_a_single_ingest(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    load_policy(engine)
    lines = [
        {
            "subject": {"email": f"bulk-{n}-canary@example.org"},
            "policy": POLICY,
            "category": "application",
            "subject_category": "candidate",
            "context": CALL,
            "outcome": outcome,
            "collected_at": "2024-03-20T09:30:00+01:00",
            "payload": {"cv": CANARY_CV},
        }
        for n, outcome in enumerate(["not_invited", "not_selected"])
    ]
    response = client.post(
        "/v1/imports",
        content="\n".join(json.dumps(line) for line in lines),
        headers={**auth_headers("ingest"), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 2
    with Session(engine) as s:
        stored = {
            r.outcome: (r.restricted_at is not None, r.restriction_ground)
            for r in s.execute(select(PersonalRecord)).scalars()
        }
    assert stored == {
        "not_invited": (True, RULE_RESTRICTION_GROUND),
        "not_selected": (False, None),
    }


def test_only_the_dpo_reads_a_restricted_record(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    refused = client.get(f"/v1/records/{ids['not_invited']}", headers=auth_headers("controller"))
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/record-restricted")
    assert CANARY_CV not in refused.text
    read = client.get(f"/v1/records/{ids['not_invited']}", headers=auth_headers("dpo"))
    assert read.status_code == 200
    assert read.json()["payload"]["cv"] == CANARY_CV
    assert read.json()["restricted"] is True
    # An unrestricted record stays readable by the controller.
    free = client.get(f"/v1/records/{ids['not_selected']}", headers=auth_headers("controller"))
    assert free.status_code == 200 and free.json()["restricted"] is False


def test_a_controller_lists_restricted_records_without_their_contents(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    path = f"/v1/subjects/{ids['subject']}/records"
    listed = client.get(path, headers=auth_headers("controller"))
    assert listed.status_code == 200
    by_id = {r["id"]: r for r in listed.json()}
    stub = by_id[ids["not_invited"]]
    assert stub["restricted"] is True
    assert stub["restriction_ground"] == RULE_RESTRICTION_GROUND
    assert "payload" not in stub and "outcome" not in stub and "category" not in stub
    assert by_id[ids["not_selected"]]["payload"]["n"] == 2
    # The restricted payload is nowhere in what the controller received.
    assert listed.text.count(CANARY_CV) == 1
    whole = client.get(path, headers=auth_headers("dpo")).json()
    assert {r["id"]: r["payload"]["n"] for r in whole} == {
        ids["not_invited"]: 1,
        ids["not_selected"]: 2,
    }


def test_a_restriction_request_hides_the_data_until_it_is_lifted(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    controller = auth_headers("controller")
    rid = file_and_verify(client, engine, "restriction", changes={"ground": "b"})
    process(client, rid, controller)
    assert client.get(f"/v1/records/{ids['not_selected']}", headers=controller).status_code == 403
    # The subject's ground replaces the rule's (it keeps the data: Art. 20(1)(b)).
    assert _stored(engine, ids["not_invited"]).restriction_ground == "Art. 20(1)(b)"
    assert client.post(f"/v1/requests/{rid}/lift", headers=controller).status_code == 200
    assert client.get(f"/v1/records/{ids['not_selected']}", headers=controller).status_code == 403
    lifted = client.post(f"/v1/requests/{rid}/lift", headers=controller)
    assert lifted.json()["outcome_details"]["records_lifted"] == 2
    assert client.get(f"/v1/records/{ids['not_selected']}", headers=controller).status_code == 200
    # Lifting the subject's restriction leaves the rule's in place.
    after = _stored(engine, ids["not_invited"])
    assert after.restricted_at is not None
    assert after.restriction_ground == RULE_RESTRICTION_GROUND
    assert client.get(f"/v1/records/{ids['not_invited']}", headers=controller).status_code == 403
    assert_no_canary_in_audit(engine)


def test_a_pending_objection_hides_the_data_and_its_refusal_shows_it_again(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    controller = auth_headers("controller")
    rid = file_and_verify(client, engine, "objection")
    process(client, rid, controller)
    assert client.get(f"/v1/records/{ids['not_selected']}", headers=controller).status_code == 403
    listed = client.get(f"/v1/subjects/{ids['subject']}/records", headers=controller)
    assert all(r["restricted"] for r in listed.json()) and CANARY_CV not in listed.text
    process(client, rid, controller, upheld=False, reason="the selection file is still needed")
    assert client.get(f"/v1/records/{ids['not_selected']}", headers=controller).status_code == 200
    assert client.get(f"/v1/records/{ids['not_invited']}", headers=controller).status_code == 403


def test_an_event_recomputes_the_rules_restriction_but_keeps_the_subjects(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    ingest = auth_headers("ingest")
    third = _record(client, ingest, ids["subject"], "not_selected", 3)
    with unit_of_work(engine) as s:
        # a wrong rule restriction on a record whose rule does not restrict, and a subject's
        # restriction: the recomputation must correct the first and keep the second
        wrong = s.get(PersonalRecord, uuid.UUID(ids["not_selected"]))
        subjects = s.get(PersonalRecord, uuid.UUID(third))
        assert wrong is not None and subjects is not None
        wrong.restricted_at = subjects.restricted_at = datetime(2024, 3, 21, tzinfo=UTC)
        wrong.restriction_ground = RULE_RESTRICTION_GROUND
        subjects.restriction_ground = "Art. 20(1)(b)"
    event = client.post(
        "/v1/events",
        json={"type": "call.closed", "context": CALL, "occurred_at": "2024-04-30T12:00:00+02:00"},
        headers=ingest,
    )
    assert event.status_code == 201 and event.json()["affected_records"] == 3
    assert _stored(engine, ids["not_selected"]).restricted_at is None
    assert _stored(engine, ids["not_selected"]).restriction_ground is None
    kept = _stored(engine, third)
    assert kept.restriction_ground == "Art. 20(1)(b)" and kept.restricted_at is not None
    invited = _stored(engine, ids["not_invited"])
    assert invited.due_at is not None
    assert invited.restriction_ground == RULE_RESTRICTION_GROUND
    assert invited.restricted_at is not None


def test_the_subjects_access_package_includes_their_restricted_data(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    rid = file_and_verify(client, engine, "access")
    process(client, rid, auth_headers("controller"))
    package = client.get(link_of(engine, rid, "json"))
    assert package.status_code == 200
    records = {r["id"]: r for r in package.json()["records"]}
    assert records[ids["not_invited"]]["data"]["cv"] == CANARY_CV
    assert records[ids["not_invited"]]["restricted"] is True
    assert records[ids["not_selected"]]["restricted"] is False


def test_a_controller_downloading_the_package_does_not_read_restricted_data(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    rid = file_and_verify(client, engine, "access")
    controller = auth_headers("controller")
    process(client, rid, controller)
    for fmt in ("json", "html", "csv"):
        staff = client.get(f"/v1/requests/{rid}/package?format={fmt}", headers=controller)
        assert staff.status_code == 200, staff.text
        # both applications carry the CV: only the unrestricted (not-selected) one shows it
        assert staff.text.count(CANARY_CV) == 1, fmt
    records = {
        r["id"]: r
        for r in client.get(f"/v1/requests/{rid}/package", headers=controller).json()["records"]
    }
    assert records[ids["not_invited"]]["data"] is None
    assert records[ids["not_invited"]]["withheld"].startswith("restricted")
    assert records[ids["not_selected"]]["data"]["n"] == 2
    # the requester's own link still has everything
    own = client.get(link_of(engine, rid, "json")).json()
    assert {r["id"]: r for r in own["records"]}[ids["not_invited"]]["data"]["cv"] == CANARY_CV


def test_the_dpo_opens_the_package_by_key_restricted_data_included(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    ids = _candidate(client, engine, auth_headers)
    rid = file_and_verify(client, engine, "access")
    process(client, rid, auth_headers("controller"))
    dpo = auth_headers("dpo")
    for fmt in ("json", "html", "csv"):
        package = client.get(f"/v1/requests/{rid}/package?format={fmt}", headers=dpo)
        assert package.status_code == 200, package.text
        # both applications carry the CV, the restricted one's included
        assert package.text.count(CANARY_CV) == 2, fmt
    records = {
        r["id"]: r for r in client.get(f"/v1/requests/{rid}/package", headers=dpo).json()["records"]
    }
    assert records[ids["not_invited"]]["data"]["cv"] == CANARY_CV
    assert records[ids["not_invited"]]["restricted"] is True
    assert records[ids["not_invited"]]["withheld"] is None
    downloads = [b for b in audit_bodies(engine) if '"action":"dsr.package.downloaded"' in b]
    assert downloads and all('"actor":"key:' in b for b in downloads)
    assert_no_canary_in_audit(engine)


def test_other_staff_keys_do_not_open_the_package(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    _candidate(client, engine, auth_headers)
    rid = file_and_verify(client, engine, "access")
    process(client, rid, auth_headers("controller"))
    for role in ("ingest", "auditor"):
        refused = client.get(f"/v1/requests/{rid}/package", headers=auth_headers(role))
        assert refused.status_code == 403, role
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert CANARY_CV not in refused.text and CANARY_EMAIL not in refused.text
    assert client.get(f"/v1/requests/{rid}/package").status_code == 403
