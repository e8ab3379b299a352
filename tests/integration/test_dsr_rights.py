"""The six rights carried out over HTTP, each ending in an outcome and a message to the subject,
plus the recipients' notices. Values never reach the audit trail."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dsr.models import DsrRecipientNotice
from policies import service as policies
from policies.loader import registry_dir
from records import service as records
from records.db import unit_of_work
from records.http import Actor, Role
from records.models import DataKey, PersonalRecord
from retention import holds
from tests.conftest import KeyFactory
from tests.integration.test_requests import (
    CANARY_CV,
    CANARY_EMAIL,
    CANARY_NAME,
    T0,
    audit_bodies,
    file_and_verify,
    frozen,
    keyring_of,
    load_policy,
    make_candidate,
    outbox,
)

__all__ = ["frozen"]  # the fixture, re-exported for pytest

DPO = Actor(id="key:test-dpo", role=Role.dpo)


def process(client: TestClient, rid: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/requests/{rid}/process", json=body or None, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def link_of(engine: Engine, rid: str, fmt: str) -> str:
    for message in outbox(engine, rid):
        found = re.search(r"(/v1/requests/\S+format=" + fmt + ")", message.body)
        if found:
            return found.group(1)
    raise AssertionError("no download link in the outbox")


def live_records(engine: Engine, subject_id: uuid.UUID) -> list[PersonalRecord]:
    with Session(engine) as s:
        return list(
            s.execute(
                select(PersonalRecord).where(col(PersonalRecord.subject_id) == subject_id)
            ).scalars()
        )


def assert_no_canary_in_audit(engine: Engine) -> None:
    trail = "\n".join(audit_bodies(engine))
    for canary in (CANARY_EMAIL, CANARY_NAME, CANARY_CV, "canary-ml-4412"):
        assert canary not in trail


def test_access_package_holds_the_data_and_what_the_law_requires(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    load_policy(engine)
    make_candidate(engine, keyring_of(client), records_count=3)
    rid = file_and_verify(client, engine, "access")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "completed"
    assert answered["outcome_details"]["records"] == 3

    package = client.get(link_of(engine, rid, "json"))
    assert package.status_code == 200
    body = package.json()
    assert len(body["records"]) == 3
    assert body["records"][0]["data"]["cv"] == CANARY_CV
    assert body["records"][0]["retention"]["due_at"] == "2025-03-27T23:00:00+00:00"
    [processing] = body["processing"]
    assert processing["reference"] == "DPR-EC-01488"
    assert processing["purposes"] and processing["recipients"]
    assert processing["rights"]["portability"] is False
    assert "European Data Protection Supervisor" in body["complaint"]

    page = client.get(link_of(engine, rid, "html"))
    assert page.headers["content-type"].startswith("text/html")
    assert "canary-ml-4412" in page.text and "<h1>Your personal data</h1>" in page.text

    frozen.tick(timedelta(minutes=61))
    assert client.get(link_of(engine, rid, "json")).status_code == 403
    assert any('"action":"dsr.package.downloaded"' in b for b in audit_bodies(engine))
    assert_no_canary_in_audit(engine)


def test_html_package_escapes_what_the_subject_wrote(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    make_candidate(engine, keyring_of(client), payload={"motivation": "<script>alert(1)</script>"})
    rid = file_and_verify(client, engine, "access")
    process(client, rid, auth_headers("controller"))
    page = client.get(link_of(engine, rid, "html")).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_erasure_keeps_the_held_record_and_names_the_hold(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    load_policy(engine)
    subject_id, ids = make_candidate(engine, keyring_of(client), records_count=3)
    with unit_of_work(engine) as s:
        hold = holds.place_hold(
            s,
            scope=holds.Scope.parse({"record_id": str(ids[1])}),
            reason="pending court case",
            case_reference="T-123/25",
            actor=DPO,
            now=T0,
        )
        hold_id = str(hold.id)
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "partial"
    details = answered["outcome_details"]
    assert details["records_erased"] == 2 and details["records_kept"] == 1
    assert details["holds"] == [hold_id]
    assert details["key_destroyed"] is False
    assert [r.id for r in live_records(engine, subject_id)] == [ids[1]]
    message = outbox(engine, rid)[-1].body
    # The subject is told that a hold keeps it and why in general terms (issue 10): never the
    # hold's internal reason or case reference.
    assert hold_id in message and "legal claims" in message
    assert "T-123/25" not in message and "pending court case" not in message
    assert_no_canary_in_audit(engine)


def test_erasure_of_everything_destroys_the_data_key(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    subject_id, _ = make_candidate(engine, keyring_of(client), records_count=2)
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "completed"
    assert live_records(engine, subject_id) == []
    with Session(engine) as s:
        key = s.execute(select(DataKey).where(col(DataKey.subject_id) == subject_id)).scalar_one()
    assert key.wrapped_key is None and key.destroyed_at is not None
    # the final answer still reached the subject (her address was in the sealed intake)
    assert outbox(engine, rid)[-1].recipient == CANARY_EMAIL


def test_rectification_changes_fields_and_audits_names_only(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    _, ids = make_candidate(engine, keyring_of(client), records_count=2)
    with unit_of_work(engine) as s:
        restricted = s.get(PersonalRecord, ids[1])
        assert restricted is not None
        restricted.restricted_at = T0
        restricted.restriction_ground = "Art. 20(1)(b)"
    new_cv = "CV rewritten: canary-rectified-9911"
    rid = file_and_verify(client, engine, "rectification", changes={"cv": new_cv})
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "partial"
    assert answered["outcome_details"]["fields"] == ["cv"]
    assert answered["outcome_details"]["refused"][0]["record_id"] == str(ids[1])
    with Session(engine) as s:
        ring = keyring_of(client)
        first = s.get(PersonalRecord, ids[0])
        second = s.get(PersonalRecord, ids[1])
        assert first is not None and second is not None
        assert records.decrypt_payload(s, keyring=ring, record=first)["cv"] == new_cv
        assert records.decrypt_payload(s, keyring=ring, record=second)["cv"] == CANARY_CV
    trail = "\n".join(audit_bodies(engine))
    assert '"action":"dsr.record.rectified"' in trail and '"fields":["cv"]' in trail
    assert "canary-rectified-9911" not in trail
    assert_no_canary_in_audit(engine)


def test_rectification_of_contested_fields_on_a_restricted_record_is_allowed(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    _, ids = make_candidate(engine, keyring_of(client))
    with unit_of_work(engine) as s:
        record = s.get(PersonalRecord, ids[0])
        assert record is not None
        record.restricted_at = T0
        record.restriction_ground = "Art. 20(1)(a) [cv]"
    rid = file_and_verify(client, engine, "rectification", changes={"cv": "corrected"})
    assert process(client, rid, auth_headers("controller"))["outcome"] == "completed"
    # a payload field that is not contested (`name` would now also rectify the identity)
    rid2 = file_and_verify(client, engine, "rectification", changes={"n": 7})
    assert process(client, rid2, auth_headers("controller"))["outcome"] == "rejected"


def test_restriction_marks_records_and_is_lifted_only_after_telling_the_subject(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    subject_id, _ = make_candidate(engine, keyring_of(client), records_count=2)
    rid = file_and_verify(client, engine, "restriction", changes={"ground": "b"})
    controller = auth_headers("controller")
    answered = process(client, rid, controller)
    assert answered["outcome_details"]["records_restricted"] == 2
    assert all(r.restriction_ground == "Art. 20(1)(b)" for r in live_records(engine, subject_id))
    announced = client.post(f"/v1/requests/{rid}/lift", headers=controller)
    assert announced.status_code == 200
    assert "lifted" in outbox(engine, rid)[-1].subject
    assert all(r.restricted_at is not None for r in live_records(engine, subject_id))
    lifted = client.post(f"/v1/requests/{rid}/lift", headers=controller)
    assert lifted.json()["outcome_details"]["records_lifted"] == 2
    assert all(r.restricted_at is None for r in live_records(engine, subject_id))


def test_objection_restricts_pending_assessment_and_upheld_erases(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    subject_id, _ = make_candidate(engine, keyring_of(client), records_count=2)
    rid = file_and_verify(client, engine, "objection")
    controller = auth_headers("controller")
    pending = process(client, rid, controller)
    assert pending["status"] == "awaiting_assessment"
    assert all(r.restriction_ground == "Art. 20(1)(d)" for r in live_records(engine, subject_id))
    upheld = process(client, rid, controller, upheld=True)
    assert upheld["outcome"] == "completed"
    assert live_records(engine, subject_id) == []


def test_objection_not_upheld_lifts_the_restriction_with_reasons(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    subject_id, _ = make_candidate(engine, keyring_of(client))
    rid = file_and_verify(client, engine, "objection")
    controller = auth_headers("controller")
    process(client, rid, controller)
    refused = process(client, rid, controller, upheld=False, reason="selection still running")
    assert refused["outcome"] == "rejected"
    assert "selection still running" in outbox(engine, rid)[-1].body
    assert all(r.restricted_at is None for r in live_records(engine, subject_id))


def test_portability_for_dpr_ec_01488_is_a_reasoned_not_applicable(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    load_policy(engine)
    make_candidate(engine, keyring_of(client))
    rid = file_and_verify(client, engine, "portability")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "rejected"
    assert answered["outcome_details"]["ground"] == "not_applicable"
    assert "Art. 22(3)" in outbox(engine, rid)[-1].body


def test_unknown_requester_is_told_nothing_is_held(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    rid = file_and_verify(client, engine, "access")  # no subject with this e-mail
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "completed"
    assert "hold no personal data" in outbox(engine, rid)[-1].body


def test_recipients_of_erased_records_are_notified_or_the_reason_recorded(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    _, ids = make_candidate(engine, keyring_of(client), records_count=2)
    controller = auth_headers("controller")
    webhook = client.post(
        "/v1/disclosures",
        json={
            "record_ids": [str(i) for i in ids],
            "recipient": "hr_b3",
            "channel": "webhook",
            "address": "https://hr.example.org/hooks/lethe",
        },
        headers=controller,
    )
    assert webhook.status_code == 201
    client.post(
        "/v1/disclosures",
        json={"record_ids": [str(ids[0])], "recipient": "selection_panel"},
        headers=controller,
    )
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, controller)
    notices = {n["recipient"]: n for n in answered["notices"]}
    assert notices["hr_b3"]["status"] == "sent" and notices["hr_b3"]["record_count"] == 2
    assert notices["selection_panel"]["status"] == "impossible"
    assert "no contact address" in notices["selection_panel"]["reason"]
    [hook] = [m for m in outbox(engine) if m.channel == "webhook"]
    sent = json.loads(hook.body)
    assert sent["event"] == "dsr.erasure"
    assert sorted(sent["record_ids"]) == sorted(str(i) for i in ids)
    with Session(engine) as s:
        assert len(list(s.execute(select(DsrRecipientNotice)).scalars())) == 2


def test_erasure_keeps_what_a_minimum_obligation_keeps_and_says_until_when(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    text = (registry_dir() / "DPR-EC-01488.yaml").read_text()
    start = text.index("  - id: non-selected-candidates")
    head, rule = text[:start], text[start:]
    minimum = head + rule.replace("direction: max", "direction: min", 1)
    with unit_of_work(engine) as s:
        policies.load_policy_file(s, path_or_text=minimum, actor="test", now=T0)
    subject_id, ids = make_candidate(engine, keyring_of(client))
    rid = file_and_verify(client, engine, "erasure")
    answered = process(client, rid, auth_headers("controller"))
    assert answered["outcome"] == "partial"
    [kept] = answered["outcome_details"]["kept"]
    assert kept["record_id"] == str(ids[0])
    assert kept["reasons"] == ["minimum:non-selected-candidates:2025-03-27T23:00:00+00:00"]
    assert "legal obligation to keep" in outbox(engine, rid)[-1].body
    assert [r.id for r in live_records(engine, subject_id)] == ids


def test_refusing_a_pending_objection_lifts_its_restriction(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    subject_id, _ = make_candidate(engine, keyring_of(client))
    rid = file_and_verify(client, engine, "objection")
    controller = auth_headers("controller")
    process(client, rid, controller)
    assert all(r.restricted_at is not None for r in live_records(engine, subject_id))
    refused = client.post(
        f"/v1/requests/{rid}/reject",
        json={"reason": "the objection names no particular situation", "ground": "excessive"},
        headers=controller,
    )
    assert refused.json()["outcome"] == "rejected"
    assert all(r.restricted_at is None for r in live_records(engine, subject_id))


def test_access_package_lists_the_recipients_each_record_was_disclosed_to(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    _, ids = make_candidate(engine, keyring_of(client), records_count=2)
    controller = auth_headers("controller")
    client.post(
        "/v1/disclosures",
        json={"record_ids": [str(ids[0])], "recipient": "selection_panel"},
        headers=controller,
    )
    rid = file_and_verify(client, engine, "access")
    process(client, rid, controller)
    records_ = {r["id"]: r for r in client.get(link_of(engine, rid, "json")).json()["records"]}
    assert [d["recipient"] for d in records_[str(ids[0])]["disclosed_to"]] == ["selection_panel"]
    assert records_[str(ids[1])]["disclosed_to"] == []


def test_erasure_and_rectification_span_many_batches(
    client: TestClient, engine: Engine, auth_headers: KeyFactory, frozen: Any
) -> None:
    subject_id, ids = make_candidate(engine, keyring_of(client), records_count=1_201)
    controller = auth_headers("controller")
    fix = file_and_verify(client, engine, "rectification", changes={"cv": "fixed"})
    assert process(client, fix, controller)["outcome_details"]["records_rectified"] == 1_201
    with unit_of_work(engine) as s:
        holds.place_hold(
            s,
            scope=holds.Scope.parse({"record_id": str(ids[-1])}),
            reason="audit sample",
            case_reference=None,
            actor=DPO,
            now=T0,
        )
    rid = file_and_verify(client, engine, "erasure")
    details = process(client, rid, controller)["outcome_details"]
    assert (details["records_erased"], details["records_kept"]) == (1_200, 1)
    [left] = live_records(engine, subject_id)
    assert left.id == ids[-1]
    with Session(engine) as s:
        assert records.decrypt_payload(s, keyring=keyring_of(client), record=left)["cv"] == "fixed"
