"""Disposition runs over HTTP and the CLI: start, dry run, pause, approve, certificate, report."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from audit_log import checkpoints as audit_checkpoints
from audit_log import service as audit
from audit_log.signing import NoteSigner, Verifier
from lethe.cli import app as cli_app
from lethe.settings import Settings
from records.crypto import Keyring
from records.db import unit_of_work, utc_now
from tests.conftest import KeyFactory
from tests.integration.test_purge import CANARY_EMAIL, make_record, make_subject, remaining


def seed(engine: Engine, settings: Settings, *, due: int, later: int = 0) -> None:
    keyring = Keyring.load_or_create(settings.effective_kek_file)
    now = utc_now()
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        for _ in range(due):
            make_record(s, keyring, subject, due_at=now - timedelta(hours=1))
        for _ in range(later):
            make_record(s, keyring, subject, due_at=now + timedelta(days=20))


def test_a_dpo_runs_a_purge_and_reads_its_signed_certificate(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, settings: Settings
) -> None:
    seed(engine, settings, due=3, later=2)
    dpo = auth_headers("dpo")
    dry = client.post("/v1/purges", json={"dry_run": True}, headers=dpo)
    assert dry.status_code == 201, dry.text
    assert dry.json()["status"] == "planned" and dry.json()["counts"]["deleted"] == 3
    assert len(remaining(engine)) == 5

    started = client.post("/v1/purges", json={"dry_run": False}, headers=dpo)
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) >= {"id", "status", "dry_run", "counts"}
    assert set(body["counts"]) >= {"deleted", "anonymised", "handed_over", "skipped_hold", "failed"}
    run = client.get(f"/v1/purges/{body['id']}", headers=auth_headers("auditor")).json()
    assert run["status"] == "completed" and run["counts"]["deleted"] == 3
    assert len(remaining(engine)) == 2
    with Session(engine) as s:
        checkpoint = audit_checkpoints.latest(s)
        assert checkpoint is not None and checkpoint.size == audit.size(s)

    cert = client.get(f"/v1/purges/{body['id']}/certificate", headers=auth_headers("auditor"))
    assert cert.status_code == 200
    served = cert.json()
    audit_key = NoteSigner.load_or_create(
        settings.effective_audit_key_file, settings.audit_log_origin
    ).verifier_key()
    assert served["public_key"] == audit_key
    verifier = Verifier.parse(audit_key)
    assert isinstance(verifier.public_key, Ed25519PublicKey)
    verifier.public_key.verify(base64.b64decode(served["signature"]), served["body"].encode())
    assert len(served["certificate"]["destroyed"]) == 3
    assert served["certificate"]["previous_sha256"] == dry.json()["certificate_sha256"]
    assert CANARY_EMAIL not in cert.text


def test_a_large_purge_waits_for_approval(
    settings: Settings, auth_headers: KeyFactory, engine: Engine
) -> None:
    from lethe.app import create_app

    small_guard = settings.model_copy(update={"purge_anomaly_floor": 2})
    seed(engine, settings, due=3)
    with TestClient(create_app(small_guard), raise_server_exceptions=False) as client:
        dpo = auth_headers("dpo")
        paused = client.post("/v1/purges", json={"dry_run": False}, headers=dpo).json()
        assert paused["status"] == "paused" and paused["pause_reason"] == "volume"
        assert len(remaining(engine)) == 3
        denied = client.post(f"/v1/purges/{paused['id']}/approve", headers=auth_headers("auditor"))
        assert denied.status_code == 403
        approved = client.post(f"/v1/purges/{paused['id']}/approve", headers=dpo)
        assert approved.status_code == 200, approved.text
        assert approved.json()["approved_by"]
        assert client.get(f"/v1/purges/{paused['id']}", headers=dpo).json()["status"] == (
            "completed"
        )
        assert remaining(engine) == set()
        twice = client.post(f"/v1/purges/{paused['id']}/approve", headers=dpo)
        assert twice.status_code == 409


def test_purge_routes_check_roles_and_ids(client: TestClient, auth_headers: KeyFactory) -> None:
    for role in ("controller", "ingest", "auditor"):
        response = client.post("/v1/purges", json={"dry_run": True}, headers=auth_headers(role))
        assert response.status_code == 403
    assert client.post("/v1/purges", json={"dry_run": True}).status_code == 401
    missing = "/v1/purges/5b0b8a55-0000-4000-8000-000000000000"
    assert client.get(missing, headers=auth_headers("dpo")).status_code == 404
    assert client.get(missing, headers=auth_headers("controller")).status_code == 403
    assert client.get("/v1/reports/retention", headers=auth_headers("ingest")).status_code == 403


def test_the_retention_report_shows_due_soon_and_nothing_overdue_after_a_purge(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, settings: Settings
) -> None:
    seed(engine, settings, due=2, later=3)
    dpo = auth_headers("dpo")
    before = client.get("/v1/reports/retention", headers=dpo).json()
    assert before["totals"]["overdue"] == 2 and before["totals"]["due_30_days"] == 3
    client.post("/v1/purges", json={"dry_run": False}, headers=dpo)
    after = client.get("/v1/reports/retention", headers=auth_headers("auditor")).json()
    assert after["totals"]["overdue"] == 0 and after["totals"]["records"] == 3
    as_csv = client.get("/v1/reports/retention?format=csv", headers=dpo)
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert rows[0]["due_30_days"] == "3"
    as_html = client.get("/v1/reports/retention?format=html", headers=dpo)
    assert "Nothing is overdue" in as_html.text and CANARY_EMAIL not in as_html.text


def test_lethe_purge_and_lethe_report_retention(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    seed(engine, settings, due=2, later=1)
    runner = CliRunner()
    dry = runner.invoke(cli_app, ["purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "deleted=2" in dry.stdout and len(remaining(engine)) == 3
    real = runner.invoke(cli_app, ["purge"])
    assert real.exit_code == 0, real.output
    assert "completed" in real.stdout and len(remaining(engine)) == 1
    shown = runner.invoke(cli_app, ["report", "retention"])
    assert json.loads(shown.stdout)["totals"]["records"] == 1
