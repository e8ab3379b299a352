"""A dry run reports its planned deletions (per rule version, with record ids), changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from lethe.cli import app as cli_app
from lethe.cli.context import console
from lethe.settings import Settings
from records.crypto import Keyring
from records.db import unit_of_work, utc_now
from retention import holds, purge
from retention.models import PurgeRun
from tests.conftest import KeyFactory
from tests.integration.test_purge import (
    CANARY_EMAIL,
    CANARY_NAME,
    DPO,
    POLICY,
    T0,
    make_ctx,
    make_keyring,
    make_record,
    make_subject,
    run_purge,
)

# What a dry run must leave exactly as it was: the data, its keys, its subjects, the holds.
WATCHED = ("personal_record", "subject", "data_key", "legal_hold")


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table: sorted(
                (tuple(row) for row in conn.execute(text(f"SELECT * FROM {table}"))), key=repr
            )
            for table in WATCHED
        }


def seed(engine: Engine, keyring: Keyring, *, due: Any) -> dict[str, list[uuid.UUID]]:
    """Three to delete, one to anonymise, one to hand over, one held, two not yet due."""
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        other = make_subject(s, keyring, n=1)
        made = {
            "deleted": [make_record(s, keyring, subject, due_at=due) for _ in range(3)],
            "anonymised": [make_record(s, keyring, other, due_at=due, action="anonymise")],
            "handed_over": [
                make_record(
                    s, keyring, other, due_at=due, action="handover", handover_to="DPR-02054"
                )
            ],
            "skipped_hold": [make_record(s, keyring, other, due_at=due)],
            "later": [
                make_record(s, keyring, other, due_at=due + timedelta(days=400)) for _ in range(2)
            ],
        }
        holds.place_hold(
            s,
            scope=holds.Scope.parse({"record_id": str(made["skipped_hold"][0].id)}),
            reason="litigation canary-hold-reason",
            case_reference=None,
            actor=DPO,
            now=due,
        )
        return {k: [r.id for r in v] for k, v in made.items()}


def _rule_counts(planned: dict[str, Any]) -> dict[tuple[Any, ...], int]:
    return {
        (r["policy"], r["rule_id"], r["rule_version"], r["action"], r["outcome"]): r["count"]
        for r in planned["rules"]
    }


def test_a_dry_run_over_the_api_reports_its_plan_and_changes_nothing(
    client: TestClient, auth_headers: KeyFactory, engine: Engine, settings: Settings
) -> None:
    keyring = Keyring.load_or_create(settings.effective_kek_file)
    made = seed(engine, keyring, due=utc_now() - timedelta(hours=1))
    before = snapshot(engine)
    response = client.post("/v1/purges", json={"dry_run": True}, headers=auth_headers("dpo"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= {"id", "status", "dry_run", "counts", "planned"}
    assert body["status"] == "planned" and body["dry_run"] is True
    assert body["counts"]["deleted"] == 3 and body["counts"]["skipped_hold"] == 1
    # the due-for-deletion count before holds: the three deleted and the held one
    assert body["planned_deletions"] == 4
    planned = body["planned"]
    assert _rule_counts(planned) == {
        (POLICY, "not-selected", 1, "delete", "deleted"): 3,
        (POLICY, "not-selected", 1, "anonymise", "anonymised"): 1,
        (POLICY, "invited", 1, "handover", "handed_over"): 1,
        (POLICY, "not-selected", 1, "delete", "skipped_hold"): 1,
    }
    for outcome in ("deleted", "anonymised", "handed_over", "skipped_hold"):
        listed = planned["records"][outcome]
        assert {uuid.UUID(i) for i in listed["record_ids"]} == set(made[outcome])
        assert listed["total"] == len(made[outcome]) and listed["truncated"] is False
    assert snapshot(engine) == before
    for canary in (CANARY_EMAIL, CANARY_NAME, "canary-hold-reason"):
        assert canary not in response.text
    # the plan stays readable, and a real run carries none
    again = client.get(f"/v1/purges/{body['id']}", headers=auth_headers("auditor")).json()
    assert again["planned"] == planned
    # its certificate does not claim that anything was deleted or destroyed
    cert = client.get(f"/v1/purges/{body['id']}/certificate", headers=auth_headers("auditor"))
    assert cert.status_code == 200, cert.text
    residual = cert.json()["certificate"]["residual_copies"]
    assert residual["live_database"].startswith("unchanged: dry run")
    real = client.post("/v1/purges", json={"dry_run": False}, headers=auth_headers("dpo")).json()
    assert real["planned"] is None
    assert snapshot(engine) != before


def test_a_large_plan_lists_a_bounded_sample_in_due_order_with_the_total(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        ids = [
            make_record(s, keyring, subject, due_at=T0 + timedelta(minutes=n)).id for n in range(7)
        ]
    before = snapshot(engine)
    run = run_purge(
        engine, make_ctx(tmp_path, batch_size=2), now=T0 + timedelta(days=1), dry_run=True
    )
    assert snapshot(engine) == before
    with Session(engine) as s:
        bounded = purge.plan(s, run.id, sample=3)
        full = purge.plan(s, run.id)
    deleted = bounded["records"]["deleted"]
    assert deleted == {"total": 7, "record_ids": [str(i) for i in ids[:3]], "truncated": True}
    assert full["records"]["deleted"]["record_ids"] == [str(i) for i in ids]
    assert full["rules"] == [
        {
            "policy": POLICY,
            "policy_version": 1,
            "rule_id": "not-selected",
            "rule_version": 1,
            "action": "delete",
            "outcome": "deleted",
            "count": 7,
        }
    ]


def test_lethe_purge_dry_run_prints_the_plan_and_changes_nothing(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    settings.ensure_data_dir()
    keyring = Keyring.load_or_create(settings.effective_kek_file)
    made = seed(engine, keyring, due=utc_now() - timedelta(hours=1))
    before = snapshot(engine)
    runner = CliRunner()
    monkeypatch.setattr(console, "width", 120)  # one table row a line
    shown = runner.invoke(cli_app, ["purge", "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert "deleted=3" in shown.stdout and "nothing was changed" in shown.stdout
    assert "1 due record(s) would be kept by a legal hold" in shown.stdout
    rows = [" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()]
    for row in (
        "DPR-EC-01488 v1 not-selected v1 delete deleted 3",
        "DPR-EC-01488 v1 not-selected v1 anonymise anonymised 1",
        "DPR-EC-01488 v1 invited v1 handover handed over 1",
        "DPR-EC-01488 v1 not-selected v1 delete skipped hold 1",
    ):
        assert row in rows
    assert "SELECT" not in shown.stdout
    as_json = runner.invoke(cli_app, ["purge", "--dry-run", "--json"])
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.stdout)
    assert {uuid.UUID(i) for i in plan["records"]["deleted"]["record_ids"]} == set(made["deleted"])
    assert CANARY_EMAIL not in shown.stdout + as_json.stdout
    assert snapshot(engine) == before
    with Session(engine) as s:
        runs = list(s.execute(select(PurgeRun)).scalars())
    assert len(runs) == 2 and all(r.dry_run and r.status == "planned" for r in runs)
