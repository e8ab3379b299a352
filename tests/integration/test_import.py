"""Bulk import over the API and the CLI, the demo data set, and key rotation from the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from typer.testing import CliRunner

from audit_log.models import AuditEntry
from lethe.cli import app as cli_app
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work
from records.models import DataKey, PersonalRecord, Subject
from retention import demo, ingest, ingest_routes
from tests.conftest import KeyFactory

CALL = "EC/2024/CNECT/443651"
CANARY_EMAIL = "canary.import-55@example.eu"
CANARY_CV = "CANARY-IMPORT-CV-0c4d"


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


def _line(**overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "subject": {"email": CANARY_EMAIL, "name": "Canary Importee"},
        "policy": "DPR-EC-01488",
        "category": "application",
        "subject_category": "candidate",
        "context": CALL,
        "outcome": "not_selected",
        "collected_at": "2024-03-01T10:00:00+01:00",
        "payload": {"cv": CANARY_CV},
    }
    line.update(overrides)
    return line


def _ndjson(lines: list[dict[str, Any] | str]) -> str:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"


def _count(session: Session, model: type[Any]) -> int:
    session.rollback()  # a fresh snapshot: see what the app or the CLI committed since
    return int(session.execute(select(func.count()).select_from(model)).scalar_one())


BAD_LINES: list[dict[str, Any] | str] = [
    _line(),
    _line(category="identity", payload={"first_name": "Canary"}),
    '{"not json',
    _line(collected_at="2024-03-01T10:00:00"),
    _line(policy="DPR-NOPE-1"),
    _line(subject={"email": "not-an-email"}),
    _line(subject=None, subject_id="4b4e1c80-0000-4000-8000-000000000001"),
    _line(category="contact_details", payload={"phone": "+32 2 000"}),
]


def test_the_api_import_keeps_good_lines_and_reports_bad_ones(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    response = client.post(
        "/v1/imports",
        content=_ndjson(BAD_LINES),
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["imported"] == 3
    assert [f["line"] for f in body["failed"]] == [3, 4, 5, 6, 7]
    errors = {f["line"]: f["error"] for f in body["failed"]}
    assert errors[4].startswith("collected_at")
    assert errors[5].startswith("policy")
    assert errors[6].startswith("subject.email")
    assert errors[7].startswith("subject_id")
    assert CANARY_EMAIL not in response.text and "not-an-email" not in response.text
    # The three good lines share one subject, found by e-mail.
    assert _count(session, Subject) == 1
    assert _count(session, PersonalRecord) == 3


def test_importing_the_same_file_twice_adds_nothing(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    headers = {**auth_headers("ingest"), "content-type": "application/x-ndjson"}
    lines: list[dict[str, Any] | str] = [_line(), _line(category="identity", payload={"n": 1})]
    first = client.post("/v1/imports", content=_ndjson(lines), headers=headers)
    second = client.post("/v1/imports", content=_ndjson(lines), headers=headers)
    assert first.json() == {"imported": 2, "failed": []}
    assert second.json() == {"imported": 2, "failed": []}
    assert _count(session, PersonalRecord) == 2
    assert _count(session, Subject) == 1


def test_an_import_reuses_a_subject_created_over_the_api(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    created = client.post(
        "/v1/subjects", json={"email": CANARY_EMAIL.upper()}, headers=auth_headers("ingest")
    ).json()["id"]
    by_id = _line(subject=None, subject_id=created, category="identity", payload={"x": 1})
    response = client.post(
        "/v1/imports",
        content=_ndjson([_line(), by_id]),
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    assert response.json() == {"imported": 2, "failed": []}
    subject_ids = set(session.scalars(select(col(PersonalRecord.subject_id))).all())
    assert {str(s) for s in subject_ids} == {created}


def test_imports_need_ndjson_and_the_ingest_role(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine
) -> None:
    body = _ndjson([_line()])
    wrong_type = client.post(
        "/v1/imports",
        content=body,
        headers={**auth_headers("ingest"), "content-type": "text/csv"},
    )
    assert wrong_type.status_code == 415
    wrong_role = client.post(
        "/v1/imports",
        content=body,
        headers={**auth_headers("controller"), "content-type": "application/x-ndjson"},
    )
    assert wrong_role.status_code == 403


def test_an_import_is_audited_by_ids(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    client.post(
        "/v1/imports",
        content=_ndjson([_line()]),
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    record_id = session.scalars(select(col(PersonalRecord.id))).one()
    bodies = [
        e.body
        for e in session.scalars(
            select(AuditEntry).where(col(AuditEntry.action) == "records.record.ingested")
        )
    ]
    assert len(bodies) == 1 and str(record_id) in bodies[0]
    assert CANARY_EMAIL not in bodies[0] and CANARY_CV not in bodies[0]


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, loaded: Engine, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LETHE_SCHEDULER", "off")
    return settings


def test_the_cli_import_reports_lines_and_keeps_the_good_ones(
    cli_env: Settings, tmp_path: Path, session: Session
) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(_ndjson(BAD_LINES))
    errors = tmp_path / "errors.csv"
    result = CliRunner().invoke(cli_app, ["import", str(path), "--errors", str(errors)])
    assert result.exit_code == 1
    assert "imported 3 record(s); 5 line(s) failed" in result.stdout
    report = errors.read_text().splitlines()
    assert report[0] == "line,field,reason"
    assert [r.split(",")[0] for r in report[1:]] == ["3", "4", "5", "6", "7"]
    assert CANARY_EMAIL not in errors.read_text() + result.output
    assert _count(session, PersonalRecord) == 3


def test_the_cli_import_all_or_nothing_imports_nothing_on_a_bad_line(
    cli_env: Settings, tmp_path: Path, session: Session
) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(_ndjson(BAD_LINES))
    result = CliRunner().invoke(cli_app, ["import", str(path), "--all-or-nothing"])
    assert result.exit_code == 1
    assert "nothing imported" in result.output
    assert _count(session, PersonalRecord) == 0
    assert _count(session, Subject) == 0
    good = tmp_path / "good.ndjson"
    good.write_text(_ndjson([_line(), _line(category="identity", payload={})]))
    ok = CliRunner().invoke(cli_app, ["import", str(good), "--all-or-nothing"])
    assert ok.exit_code == 0, ok.output
    assert _count(session, PersonalRecord) == 2


def test_the_cli_imports_csv(cli_env: Settings, tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "subject.email,subject.name,policy,category,subject_category,context,outcome,"
        "collected_at,payload.cv,payload.languages\n"
        f"{CANARY_EMAIL},Canary,DPR-EC-01488,application,candidate,{CALL},not_selected,"
        f"2024-03-01T10:00:00+01:00,{CANARY_CV},fr en\n"
        f"{CANARY_EMAIL},Canary,DPR-EC-01488,application,candidate,{CALL},not_selected,"
        "yesterday,x,y\n"
    )
    result = CliRunner().invoke(cli_app, ["import", str(path)])
    assert result.exit_code == 1
    assert "imported 1 record(s); 1 line(s) failed" in result.stdout
    keyring = Keyring.load_or_create(cli_env.effective_kek_file)
    with Session(engine) as s:
        [(subject, _)] = records.find_subjects(s, keyring=keyring, email=CANARY_EMAIL)
        [record] = records.records_of_subject(s, subject.id)
        payload = records.decrypt_payload(s, keyring=keyring, record=record)
    assert payload == {"cv": CANARY_CV, "languages": "fr en"}


def test_the_cli_adds_an_event_and_sets_due_dates(
    cli_env: Settings, tmp_path: Path, session: Session
) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(_ndjson([_line()]))
    assert CliRunner().invoke(cli_app, ["import", str(path)]).exit_code == 0
    naive = CliRunner().invoke(
        cli_app,
        ["events", "add", "--type", "call.closed", "--context", CALL],
        catch_exceptions=False,
    )
    assert naive.exit_code != 0
    result = CliRunner().invoke(
        cli_app,
        [
            "events",
            "add",
            "--type",
            "call.closed",
            "--context",
            CALL,
            "--occurred-at",
            "2024-03-27T12:00:00+01:00",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 record(s) got a new due date" in result.stdout
    due = session.scalars(select(col(PersonalRecord.due_at))).one()
    assert due is not None and due.year == 2025


def test_the_cli_rotates_the_kek_and_destroys_expired_epochs(
    cli_env: Settings, tmp_path: Path, session: Session, engine: Engine
) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(_ndjson([_line()]))
    assert CliRunner().invoke(cli_app, ["import", str(path)]).exit_code == 0
    rotated = CliRunner().invoke(cli_app, ["keys", "rotate-kek"])
    assert rotated.exit_code == 0, rotated.output
    assert "epoch 2 is current; 1 data key(s) rewrapped" in rotated.stdout
    assert session.scalars(select(col(DataKey.kek_epoch))).all() == [2]
    alias = CliRunner().invoke(cli_app, ["keys", "rotate"])
    assert "epoch 3 is current" in alias.stdout
    early = CliRunner().invoke(cli_app, ["keys", "destroy-expired"])
    assert "no epoch is past the backup window" in early.stdout
    keyring = Keyring.load_or_create(cli_env.effective_kek_file)
    assert [e.key is not None for e in keyring.epochs()] == [True, True, True]
    with Session(engine) as s:
        [record] = s.scalars(select(PersonalRecord)).all()
        assert records.decrypt_payload(s, keyring=keyring, record=record) == {"cv": CANARY_CV}
    session.rollback()
    actions = session.scalars(select(col(AuditEntry.action))).all()
    assert actions.count("records.kek.rotated") == 2


# --- demo ----------------------------------------------------------------------------------------


def test_the_demo_loads_candidates_and_closes_the_call(engine: Engine, tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path / "kek.json")
    now = datetime(2024, 4, 2, tzinfo=UTC)
    result = demo.run_demo(engine, keyring=keyring, candidates=40, now=now, batch_size=50)
    assert result.failed == 0
    assert result.records >= 40 * 4
    assert result.affected_by_call_closed > 0
    again = demo.run_demo(engine, keyring=keyring, candidates=40, now=now, batch_size=50)
    assert again.records == result.records and again.affected_by_call_closed == 0
    with Session(engine) as s:
        assert _count(s, Subject) == 40
        assert _count(s, PersonalRecord) == result.records
        outcomes = set(s.scalars(select(col(PersonalRecord.outcome))).all())
        assert {"not_selected", None} <= outcomes
        email = next(demo.candidate_lines(40))["subject"]["email"]
        [(subject, identity)] = records.find_subjects(s, keyring=keyring, email=email)
        cvs = [
            records.decrypt_payload(s, keyring=keyring, record=r)
            for r in records.records_of_subject(s, subject.id)
            if r.category == "application"
        ]
        assert cvs and str(cvs[0]["cv"]).startswith(f"Curriculum vitae of {identity.name}")
        not_selected = s.scalars(
            select(PersonalRecord).where(
                col(PersonalRecord.outcome) == "not_selected",
                col(PersonalRecord.category) == "application",
            )
        ).first()
        assert not_selected is not None and not_selected.due_at is not None


@pytest.mark.parametrize("forget", [False, True], ids=["remembered", "after-a-trim"])
def test_a_subject_is_reused_across_batches(
    loaded: Engine, tmp_path: Path, session: Session, forget: bool
) -> None:
    keyring = Keyring.load_or_create(tmp_path / "kek.json")
    now = datetime(2024, 4, 2, tzinfo=UTC)
    with unit_of_work(loaded) as s:
        state = ingest.ImportState(s, keyring=keyring, now=now)
        ingest.import_batch(
            s, state=state, lines=[(1, ingest.validate_line(1, _line()))], actor="t", now=now
        )
    if forget:
        state.trim(limit=0)
    with unit_of_work(loaded) as s:
        state.rebind(s)
        line = ingest.validate_line(2, _line(category="identity", payload={}))
        result = ingest.import_batch(s, state=state, lines=[(2, line)], actor="t", now=now)
    assert result.imported == 1
    assert _count(session, Subject) == 1
    assert _count(session, PersonalRecord) == 2


def test_destroy_expired_waits_for_the_backup_window(
    cli_env: Settings, tmp_path: Path, session: Session
) -> None:
    path = tmp_path / "records.ndjson"
    path.write_text(_ndjson([_line()]))
    assert CliRunner().invoke(cli_app, ["import", str(path)]).exit_code == 0
    assert CliRunner().invoke(cli_app, ["keys", "rotate-kek"]).exit_code == 0
    later = datetime.now(UTC) + timedelta(days=cli_env.kek_backup_window_days, minutes=1)
    with freeze_time(later):
        result = CliRunner().invoke(cli_app, ["keys", "destroy-expired"])
    assert result.exit_code == 0, result.output
    assert "destroyed key-encryption-key epoch(s): 1" in result.stdout
    keyring = Keyring.load_or_create(cli_env.effective_kek_file)
    assert [e.key is None for e in keyring.epochs()] == [True, False]
    session.rollback()
    destroyed = session.scalars(
        select(AuditEntry).where(col(AuditEntry.action) == "records.kek.epoch_destroyed")
    ).one()
    assert destroyed.target == "kek_epoch:1"


def test_repeated_ids_in_one_file_and_failed_lines_leave_nothing_behind(
    client: TestClient, auth_headers: KeyFactory, loaded: Engine, session: Session
) -> None:
    fixed = "6f1d2c3b-0000-4000-8000-00000000abcd"
    failing = "6f1d2c3b-0000-4000-8000-00000000dead"
    lines: list[dict[str, Any] | str] = [
        _line(id=fixed),
        _line(id=fixed),  # the same line again: a replay
        _line(id=fixed, payload={"cv": "changed"}),  # the same id, another body
        _line(id=failing, policy="DPR-NOPE-1", subject={"email": "lonely@example.eu"}),
        _line(id=failing, subject={"email": "lonely@example.eu"}),
    ]
    response = client.post(
        "/v1/imports",
        content=_ndjson(lines),
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    body = response.json()
    assert body["imported"] == 2
    assert [(f["line"], f["error"].split(":")[0]) for f in body["failed"]] == [
        (3, "id"),
        (4, "policy"),
        (5, "id"),
    ]
    # The line that failed on its policy created no subject.
    assert _count(session, Subject) == 1
    assert _count(session, PersonalRecord) == 1


def test_a_long_api_import_is_written_batch_by_batch(
    client: TestClient,
    auth_headers: KeyFactory,
    loaded: Engine,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_routes, "IMPORT_BATCH", 7)
    lines: list[dict[str, Any] | str] = [
        _line(subject={"email": f"batch{n % 9}@example.eu"}, payload={"n": n}) for n in range(40)
    ]
    lines.insert(20, "{broken")
    response = client.post(
        "/v1/imports",
        content=_ndjson(lines),
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    assert response.json() == {"imported": 40, "failed": [{"line": 21, "error": "not JSON"}]}
    assert _count(session, PersonalRecord) == 40
    assert _count(session, Subject) == 9
    batches = session.scalars(
        select(AuditEntry).where(col(AuditEntry.action) == "records.record.ingested")
    ).all()
    assert len(batches) == 6  # 41 lines, 7 a batch
