"""A candidate of call EC/2024/CNECT/443651 (record DPR-EC-01488) exercises her rights, over HTTP,
with her codes and links read from a real local SMTP server:

ingest → call closes → she files access → verifies → downloads her CV → the DPO places a hold on
her application → she files erasure → a partial answer names the hold → the audit trail verifies
and holds an entry for every step.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from audit_log.verify import verify_database
from lethe.app import create_app
from lethe.settings import Settings
from policies.loader import registry_dir
from tests.conftest import KeyFactory
from tests.integration.test_notifier import Mailbox, mailbox, smtp_settings

__all__ = ["mailbox", "smtp_settings"]  # fixtures, re-exported for pytest

EMAIL = "ada.canary-3141@example.org"
NAME = "Ada Canary-Lovegood"
CV = "Curriculum vitae of Ada: canary-cv-3141, 9 years of ML evaluation"
CALL = "EC/2024/CNECT/443651"


def _link(mailbox: Mailbox, request_id: str, fmt: str) -> str:
    for body in mailbox.bodies_for(request_id):
        found = re.search(r"(/v1/requests/\S+format=" + fmt + ")", body)
        if found:
            return found.group(1)
    raise AssertionError("no link delivered")


def _file(client: TestClient, mailbox: Mailbox, type_: str) -> str:
    filed = client.post("/v1/requests", json={"type": type_, "email": EMAIL})
    assert filed.status_code == 202
    assert filed.json()["status"] == "awaiting_identity"
    rid: str = filed.json()["id"]
    verified = client.post(f"/v1/requests/{rid}/verify", json={"code": mailbox.code_for(rid)})
    assert verified.json() == {"status": "verified"}
    return rid


def test_candidate_accesses_then_erases_under_a_hold(
    smtp_settings: Settings,
    mailbox: Mailbox,
    engine: Engine,
    auth_headers: KeyFactory,
    tmp_path: Path,
) -> None:
    dpo, ingest, controller = (auth_headers(r) for r in ("dpo", "ingest", "controller"))
    with freeze_time(datetime(2024, 3, 20, 10, tzinfo=UTC)) as clock:
        client = TestClient(create_app(smtp_settings))
        with client:
            policy = (registry_dir() / "DPR-EC-01488.yaml").read_text()
            loaded = client.post(
                "/v1/policies",
                content=policy,
                headers={**dpo, "Content-Type": "application/yaml"},
            )
            assert loaded.status_code == 201, loaded.text
            subject = client.post(
                "/v1/subjects", json={"email": EMAIL, "name": NAME}, headers=ingest
            ).json()
            ids = []
            for category, payload in (
                ("identity", {"name": NAME, "nationality": "BE"}),
                ("contact_details", {"email": EMAIL}),
                ("application", {"cv": CV, "motivation": "AI Act enforcement"}),
            ):
                stored = client.post(
                    "/v1/records",
                    json={
                        "subject_id": subject["id"],
                        "policy": "DPR-EC-01488",
                        "category": category,
                        "subject_category": "candidate",
                        "context": CALL,
                        "outcome": "not_selected",
                        "collected_at": "2024-03-20T10:00:00Z",
                        "payload": payload,
                    },
                    headers=ingest,
                )
                assert stored.status_code == 201, stored.text
                ids.append(stored.json()["id"])
            closed = client.post(
                "/v1/events",
                json={
                    "type": "call.closed",
                    "context": CALL,
                    "occurred_at": "2024-03-27T11:00:00Z",
                },
                headers=ingest,
            )
            assert closed.status_code == 201

            # May 2024: she asks what is held about her.
            clock.move_to(datetime(2024, 5, 6, 9, tzinfo=UTC))
            access = _file(client, mailbox, "access")
            done = client.post(f"/v1/requests/{access}/process", headers=controller)
            assert done.json()["outcome"] == "completed"
            package = client.get(_link(mailbox, access, "json"))
            assert package.status_code == 200
            held = {r["category"]: r for r in package.json()["records"]}
            assert held["application"]["data"]["cv"] == CV
            assert held["application"]["retention"]["due_at"] is not None
            assert package.json()["processing"][0]["reference"] == "DPR-EC-01488"
            assert "canary-cv-3141" in client.get(_link(mailbox, access, "html")).text

            # The DPO holds her application for a complaint; then she asks for erasure.
            clock.tick(timedelta(days=2))
            hold = client.post(
                "/v1/holds",
                json={
                    "scope": {"record_id": ids[2]},
                    "reason": "complaint before the Ombudsman about the selection",
                    "case_reference": "OI/7/2024",
                },
                headers=dpo,
            )
            assert hold.status_code == 201, hold.text
            hold_id = hold.json()["id"]
            erasure = _file(client, mailbox, "erasure")
            answered = client.post(f"/v1/requests/{erasure}/process", headers=controller).json()
            assert answered["outcome"] == "partial"
            assert answered["outcome_details"]["records_erased"] == 2
            assert answered["outcome_details"]["holds"] == [hold_id]
            final = mailbox.bodies_for(erasure)[-1]
            # Only the hold's subject-facing reason reaches her (issue 10), not the case.
            assert hold_id in final and "legal claims" in final
            assert "OI/7/2024" not in final and "Ombudsman" not in final
            assert "European Data Protection Supervisor" in final
            staff_view = client.get(f"/v1/requests/{erasure}", headers=controller).json()
            assert staff_view["status"] == "partial"
            assert client.get(f"/v1/records/{ids[0]}", headers=controller).status_code == 404
            assert client.get(f"/v1/records/{ids[2]}", headers=controller).status_code == 200
            signer = client.app.state.audit_signer  # type: ignore[attr-defined]

    with Session(engine) as session:
        report = verify_database(
            session,
            verifier_key=signer.verifier_key(),
            origin=smtp_settings.audit_log_origin,
            witness_dir=tmp_path / "witness",
        )
        assert report.problems == []
        assert report.checkpoints >= 2  # one after each request completion
        entries = list(session.execute(select(AuditEntry).order_by(col(AuditEntry.idx))).scalars())
    trail = "\n".join(e.body for e in entries)
    for canary in (EMAIL, NAME, CV, "canary-cv-3141"):
        assert canary not in trail

    def steps(request_id: str) -> list[str]:
        return [e.action for e in entries if e.target == f"dsr_request:{request_id}"]

    assert steps(access) == [
        "dsr.request.received",
        "dsr.request.verified",
        "dsr.request.processing",
        "dsr.request.closed",
        "dsr.package.downloaded",
        "dsr.package.downloaded",
    ]
    assert steps(erasure) == [
        "dsr.request.received",
        "dsr.request.verified",
        "dsr.request.processing",
        "dsr.request.closed",
    ]
    erased = [e.target for e in entries if e.action == "dsr.record.erased"]
    assert sorted(erased) == sorted(f"personal_record:{i}" for i in ids[:2])
    assert any(e.action == "retention.hold.placed" for e in entries)
