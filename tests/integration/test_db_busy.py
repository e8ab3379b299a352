"""A busy database is a 503 with Retry-After, never a 500; a long import lets other writers in.

The lock another writer holds is real: SQLite's `BEGIN IMMEDIATE` in a raw connection, and on
PostgreSQL the audit writers' advisory lock (what every audited write waits for) held in an open
transaction, with the busy timeout (`lock_timeout`) set short for the test.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col
from typer.testing import CliRunner

from audit_log.models import AuditEntry
from audit_log.service import ADVISORY_LOCK_KEY
from lethe.app import create_app
from lethe.cli import app as cli_app
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.db import is_busy_error, unit_of_work
from retention import ingest, ingest_routes
from tests.conftest import KeyFactory

CANARY_EMAIL = "canary-7f3a@example.org"
POLICY = "DPR-EC-01488"
BUSY_SECONDS = 0.3


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s,
            path_or_text=registry_dir() / f"{POLICY}.yaml",
            actor="test",
            now=datetime(2024, 1, 1, tzinfo=UTC),
        )
    return engine


@pytest.fixture
def busy_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"database_busy_timeout_seconds": BUSY_SECONDS})


@pytest.fixture
def busy_client(busy_settings: Settings, loaded: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(busy_settings), raise_server_exceptions=False) as c:
        yield c


@contextmanager
def write_lock_held(url: str) -> Iterator[None]:
    """Another writer holds the write lock until the block ends."""
    if url.startswith("sqlite"):
        raw = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")
            yield
            raw.execute("ROLLBACK")
        finally:
            raw.close()
        return
    other = create_engine(url)
    try:
        with other.connect() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            yield
            conn.rollback()
    finally:
        other.dispose()


def _intake(client: TestClient) -> Any:
    return client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})


def _busy_rejections(client: TestClient) -> float:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return sum(
        s.value
        for f in families
        if f.name == "lethe_db_busy_rejections"
        for s in f.samples
        if s.name.endswith("_total")
    )


def _assert_busy(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["type"].endswith("/database-busy") and body["status"] == 503
    assert CANARY_EMAIL not in response.text


def test_public_intake_answers_503_with_retry_after_while_another_writer_holds_the_lock(
    busy_client: TestClient, busy_settings: Settings
) -> None:
    with write_lock_held(busy_settings.effective_database_url):
        _assert_busy(_intake(busy_client))
    assert _busy_rejections(busy_client) == 1
    assert _intake(busy_client).status_code == 202  # the lock gone, the same request passes


def test_placing_a_hold_answers_503_while_another_writer_holds_the_lock(
    busy_client: TestClient, busy_settings: Settings, auth_headers: KeyFactory, session: Session
) -> None:
    dpo = auth_headers("dpo")
    hold = {"scope": {"policy": POLICY}, "reason": "litigation pending"}
    with write_lock_held(busy_settings.effective_database_url):
        _assert_busy(busy_client.post("/v1/holds", json=hold, headers=dpo))
    placed = busy_client.post("/v1/holds", json=hold, headers=dpo)
    assert placed.status_code == 201, placed.text
    actions = session.scalars(select(col(AuditEntry.action))).all()
    assert actions.count("retention.hold.placed") == 1  # the refused attempt left nothing


def test_a_database_error_that_is_not_busy_stays_a_500(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:  # a broken schema, not a busy one
        conn.execute(text("ALTER TABLE dsr_request RENAME TO dsr_request_gone"))
    response = _intake(client)
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert CANARY_EMAIL not in response.text


def test_busy_errors_are_told_apart_from_other_database_errors() -> None:
    locked = sa_exc.OperationalError(
        "BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")
    )
    missing = sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: x"))
    duplicate = sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE failed"))
    pool = sa_exc.TimeoutError("QueuePool limit reached")
    assert is_busy_error(locked) and is_busy_error(pool)
    assert not is_busy_error(missing) and not is_busy_error(duplicate)
    assert not is_busy_error(ValueError("database is locked"))


# --- a long import lets other writers in between its batches -------------------------------


def _line(n: int) -> str:
    return json.dumps(
        {
            "subject": {"email": f"importee{n}@example.eu"},
            "policy": POLICY,
            "category": "application",
            "subject_category": "candidate",
            "context": "EC/2024/CNECT/443651",
            "outcome": "not_selected",
            "collected_at": "2024-03-01T10:00:00+01:00",
            "payload": {"n": n},
        }
    )


def _actions(session: Session) -> list[str]:
    """The import's batches and the public request, in log order."""
    session.rollback()
    rows = session.scalars(select(col(AuditEntry.action)).order_by(col(AuditEntry.idx)))
    return [a for a in rows if a in ("records.record.ingested", "dsr.request.received")]


def _intake_after_first_batch(monkeypatch: pytest.MonkeyPatch, client: TestClient) -> list[int]:
    """After the import's first batch returns, file a public request; returns its statuses."""
    original = ingest.import_batch_committed
    statuses: list[int] = []

    def first_then_intake(*args: Any, **kwargs: Any) -> ingest.BatchResult:
        result = original(*args, **kwargs)
        if not statuses:
            statuses.append(_intake(client).status_code)
        return result

    monkeypatch.setattr(ingest, "import_batch_committed", first_then_intake)
    return statuses


def test_public_intake_mid_way_through_an_api_import_commits_between_its_batches(
    busy_client: TestClient,
    auth_headers: KeyFactory,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_routes, "IMPORT_BATCH", 5)
    statuses = _intake_after_first_batch(monkeypatch, busy_client)
    response = busy_client.post(
        "/v1/imports",
        content="\n".join(_line(n) for n in range(15)) + "\n",
        headers={**auth_headers("ingest"), "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 15, "failed": []}
    assert statuses == [202]
    actions = _actions(session)
    # The request landed between the first batch and the second, not after the import.
    assert actions == [
        "records.record.ingested",
        "dsr.request.received",
        "records.record.ingested",
        "records.record.ingested",
    ]


def test_public_intake_mid_way_through_a_cli_import_commits_between_its_batches(
    busy_client: TestClient,
    busy_settings: Settings,
    session: Session,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", busy_settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(busy_settings.data_dir))
    monkeypatch.setenv("LETHE_DATABASE_BUSY_TIMEOUT_SECONDS", str(BUSY_SECONDS))
    path = tmp_path / "records.ndjson"
    path.write_text("\n".join(_line(n) for n in range(12)) + "\n")
    statuses = _intake_after_first_batch(monkeypatch, busy_client)
    result = CliRunner().invoke(cli_app, ["import", str(path), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "imported 12 record(s); 0 line(s) failed" in result.stdout
    assert statuses == [202]
    actions = _actions(session)
    assert actions[:2] == ["records.record.ingested", "dsr.request.received"]
    assert actions.count("records.record.ingested") == 3


def test_a_cli_import_against_a_held_lock_says_so_in_one_line_and_exits_1(
    busy_settings: Settings, loaded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", busy_settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(busy_settings.data_dir))
    monkeypatch.setenv("LETHE_DATABASE_BUSY_TIMEOUT_SECONDS", str(BUSY_SECONDS))
    path = tmp_path / "records.ndjson"
    path.write_text(_line(1) + "\n")
    with write_lock_held(busy_settings.effective_database_url):
        result = CliRunner().invoke(cli_app, ["import", str(path)])
    assert result.exit_code == 1
    assert "the database stayed busy" in result.stderr
    assert "Traceback" not in result.output
    assert "importee1@example.eu" not in result.output
