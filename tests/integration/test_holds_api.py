"""Legal holds over HTTP and the CLI: placed, listed, released, audited, role-checked."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from typer.testing import CliRunner

from audit_log.models import AuditEntry
from lethe.cli import app as cli_app
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records import service as records
from records.db import unit_of_work, utc_now
from tests.conftest import KeyFactory

SECRET_REASON = "canary-reason: complaint by Zebedee Quux"


def test_a_dpo_places_lists_and_releases_a_hold(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    dpo = auth_headers("dpo")
    # A hold names something that exists (a mistyped target would protect nothing).
    created = client.post(
        "/v1/subjects", json={"email": "held@example.eu"}, headers=auth_headers("ingest")
    )
    subject_id = str(created.json()["id"])
    placed = client.post(
        "/v1/holds",
        json={
            "scope": {"subject_id": subject_id},
            "reason": SECRET_REASON,
            "case_reference": "T-1/25",
        },
        headers=dpo,
    )
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["scope"] == {"subject_id": subject_id} and hold["active"] is True
    listed = client.get("/v1/holds?active=true", headers=auth_headers("controller"))
    assert [h["id"] for h in listed.json()] == [hold["id"]]

    released = client.post(
        f"/v1/holds/{hold['id']}/release", json={"reason": "case closed"}, headers=dpo
    )
    assert released.status_code == 200 and released.json()["active"] is False
    assert client.get("/v1/holds?active=true", headers=dpo).json() == []
    again = client.post(f"/v1/holds/{hold['id']}/release", json={"reason": "twice"}, headers=dpo)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"

    with Session(engine) as s:
        entries = list(
            s.execute(
                select(AuditEntry).where(col(AuditEntry.action).startswith("retention.hold."))
            ).scalars()
        )
    assert [e.action for e in entries] == ["retention.hold.placed", "retention.hold.released"]
    assert all(SECRET_REASON not in e.body and "Zebedee" not in e.body for e in entries)
    assert str(entries[0].subject_id) == subject_id


def test_a_hold_needs_exactly_one_valid_scope(client: TestClient, auth_headers: KeyFactory) -> None:
    dpo = auth_headers("dpo")
    both = {"scope": {"policy": "DPR-EC-01488", "context": "X"}, "reason": "r"}
    none: dict[str, object] = {"scope": {}, "reason": "r"}
    bad_id = {"scope": {"record_id": "not-a-uuid"}, "reason": "r"}
    for body in (both, none, bad_id):
        response = client.post("/v1/holds", json=body, headers=dpo)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    missing = client.post(f"/v1/holds/{uuid.uuid4()}/release", json={"reason": "x"}, headers=dpo)
    assert missing.status_code == 404


def test_hold_routes_check_roles(
    client: TestClient, auth_headers: KeyFactory, engine: Engine
) -> None:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=utc_now()
        )
    body = {"scope": {"policy": "DPR-EC-01488"}, "reason": "audit"}
    assert client.post("/v1/holds", json=body).status_code == 401
    for role in ("controller", "ingest", "auditor"):
        assert client.post("/v1/holds", json=body, headers=auth_headers(role)).status_code == 403
    for role in ("ingest", "auditor"):
        assert client.get("/v1/holds", headers=auth_headers(role)).status_code == 403
    hold = client.post("/v1/holds", json=body, headers=auth_headers("dpo")).json()
    release = f"/v1/holds/{hold['id']}/release"
    assert (
        client.post(release, json={"reason": "x"}, headers=auth_headers("controller")).status_code
        == 403
    )


def test_the_cli_places_lists_and_releases_holds(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, engine: Engine
) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    runner = CliRunner()
    with unit_of_work(engine) as s:  # the context a hold names is one the service has seen
        records.add_event(
            s,
            type="call.closed",
            context="EC/2024/CNECT/443651",
            occurred_at=utc_now(),
            actor="test",
            now=utc_now(),
        )
    placed = runner.invoke(
        cli_app, ["holds", "place", "--context", "EC/2024/CNECT/443651", "--reason", "appeal"]
    )
    assert placed.exit_code == 0, placed.output
    hold_id = placed.stdout.strip().splitlines()[-1]
    uuid.UUID(hold_id)
    listed = runner.invoke(cli_app, ["holds", "list", "--json"])
    assert json.loads(listed.stdout.strip())["scope"] == {"context": "EC/2024/CNECT/443651"}
    released = runner.invoke(cli_app, ["holds", "release", hold_id, "--reason", "over"])
    assert released.exit_code == 0, released.output
    assert runner.invoke(cli_app, ["holds", "list", "--json"]).stdout.strip() == ""
    twice = runner.invoke(cli_app, ["holds", "release", hold_id, "--reason", "over"])
    assert twice.exit_code == 1
    bad = runner.invoke(cli_app, ["holds", "place", "--reason", "no scope"])
    assert bad.exit_code == 1
