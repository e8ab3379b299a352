"""GET /v1/audit/checkpoint answers as soon as the log has entries, and stays fresh.

A signed checkpoint is made at startup (when the log grew since the last one), within
`LETHE_CHECKPOINT_FRESHNESS_SECONDS` after a write, and on the spot when a reader finds entries
but no checkpoint at all. Every path is "checkpoint if grown": replicas never sign a size twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from audit_log import checkpoints, service
from audit_log.jobs import Checkpointer, checkpoint_if_grown
from audit_log.models import AuditCheckpoint
from audit_log.signing import NoteSigner, Verifier, open_note
from lethe.app import create_app
from lethe.cli import app as cli_app
from lethe.settings import Settings
from lethe.wiring import build_wiring
from records.db import make_engine, unit_of_work
from tests.integration.test_db_busy import write_lock_held

NOW = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)
CANARY_EMAIL = "canary-7f3a@example.org"


def _signer(settings: Settings) -> NoteSigner:
    return NoteSigner.load_or_create(settings.effective_audit_key_file, settings.audit_log_origin)


def _grow(engine: Engine, count: int) -> None:
    """Entries written by another process (this engine is nobody's checkpointer)."""
    with unit_of_work(engine) as s:
        for _ in range(count):
            service.append(
                s,
                action="records.event.added",
                actor="cli",
                now=NOW,
                target=f"event:{uuid.uuid4()}",
            )


def _checkpoints(engine: Engine) -> list[AuditCheckpoint]:
    with Session(engine) as s:
        return checkpoints.all_in_order(s)


def _log_size(engine: Engine) -> int:
    with Session(engine) as s:
        return service.size(s)


def _client(settings: Settings, **overrides: object) -> TestClient:
    app = create_app(settings.model_copy(update=overrides))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def quiet(settings: Settings) -> Settings:
    """No checkpointer: only the on-the-spot path can sign."""
    return settings.model_copy(update={"checkpoint_freshness_seconds": 0})


def test_a_log_with_entries_but_no_checkpoint_is_answered_with_a_signed_one(
    quiet: Settings, engine: Engine
) -> None:
    with _client(quiet) as client:
        assert client.get("/v1/audit/checkpoint").status_code == 404  # empty: nothing to sign
        _grow(engine, 7)
        assert _checkpoints(engine) == []
        response = client.get("/v1/audit/checkpoint")
        assert response.status_code == 200, response.text
        verifier = Verifier.parse(client.get("/v1/audit/public-key").text)
        origin, size, _root = open_note(response.text, verifier).splitlines()
        assert (origin, size) == (quiet.audit_log_origin, "7")
        again = client.get("/v1/audit/checkpoint")
        assert again.text == response.text
    assert [c.size for c in _checkpoints(engine)] == [7]  # made once, then read


def test_startup_signs_a_checkpoint_when_the_log_grew_since_the_last(
    settings: Settings, engine: Engine
) -> None:
    _grow(engine, 3)
    with freeze_time(NOW):
        wiring = build_wiring(settings, engine, CollectorRegistry())  # what `lethe worker` runs
        wiring.start()
        wiring.stop()
    made = _checkpoints(engine)
    assert [(c.size, c.created_at) for c in made] == [(3, NOW)]
    with _client(settings) as client:  # `lethe serve`: nothing grew, nothing new
        assert client.get("/v1/audit/checkpoint").text == made[0].note
    assert len(_checkpoints(engine)) == 1
    _grow(engine, 2)
    with _client(settings):
        pass
    assert [c.size for c in _checkpoints(engine)] == [3, 5]


def test_a_committed_write_wakes_the_checkpointer_and_reads_do_not(
    settings: Settings, engine: Engine
) -> None:
    # A freshness far longer than the test: the thread never fires, the test drives it.
    with _client(settings, checkpoint_freshness_seconds=3600) as client:
        checkpointer: Checkpointer = client.app.state.checkpointer  # type: ignore[attr-defined]
        assert not checkpointer.pending
        assert client.get("/v1/audit/checkpoint").status_code == 404
        assert client.get("/healthz").status_code == 200
        assert not checkpointer.pending
        intake = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
        assert intake.status_code == 202, intake.text
        assert checkpointer.pending
        made = checkpointer.run_once()
        assert made is not None and made.size == _log_size(engine)
        assert CANARY_EMAIL not in made.note
        assert client.get("/v1/audit/checkpoint").text == made.note


def test_a_rolled_back_write_does_not_wake_the_checkpointer(
    settings: Settings, engine: Engine
) -> None:
    checkpointer = Checkpointer(engine, _signer(settings), freshness=3600)
    checkpointer.watch()
    try:
        with pytest.raises(RuntimeError), unit_of_work(engine) as s:
            service.append(s, action="records.event.added", actor="cli", now=NOW)
            service.flush_pending(s)
            raise RuntimeError("abandon the transaction")
        assert not checkpointer.pending
        _grow(engine, 1)
        assert checkpointer.pending
    finally:
        checkpointer.unwatch()


def test_the_checkpointer_signs_shortly_after_a_write(settings: Settings, engine: Engine) -> None:
    with _client(settings, checkpoint_freshness_seconds=0.05) as client:
        intake = client.post("/v1/requests", json={"type": "access", "email": CANARY_EMAIL})
        assert intake.status_code == 202
        size = _log_size(engine)
        # Eventually, not within a measured time: the thread wakes, waits, signs.
        deadline = time.monotonic() + 30
        while not any(c.size == size for c in _checkpoints(engine)):
            assert time.monotonic() < deadline, "no checkpoint followed the write"
            time.sleep(0.05)
        assert client.get("/v1/audit/checkpoint").status_code == 200


@pytest.fixture
def replicas(settings: Settings) -> Iterator[list[Engine]]:
    engines = [make_engine(settings.effective_database_url) for _ in range(3)]
    yield engines
    for e in engines:
        e.dispose()


def test_replicas_checkpointing_at_once_sign_each_size_once(
    settings: Settings, engine: Engine, replicas: list[Engine]
) -> None:
    signer = _signer(settings)
    _grow(engine, 4)
    barrier = threading.Barrier(len(replicas))
    sizes: list[int | None] = []
    errors: list[BaseException] = []

    def replica(own: Engine) -> None:
        try:
            barrier.wait()
            made = checkpoint_if_grown(own, signer, NOW)
            sizes.append(None if made is None else made.size)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(e,)) for e in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sizes == [4, 4, 4]
    with Session(engine) as s:
        assert s.exec(select(col(AuditCheckpoint.size))).all() == [4]


def test_a_busy_database_delays_the_checkpoint_and_never_breaks_the_reader_or_the_checkpointer(
    quiet: Settings, engine: Engine
) -> None:
    busy = quiet.model_copy(update={"database_busy_timeout_seconds": 0.3})
    _grow(engine, 2)
    busy_engine = make_engine(busy.effective_database_url, busy_timeout=0.3)
    checkpointer = Checkpointer(busy_engine, _signer(busy), freshness=3600)
    try:
        with _client(busy) as client, write_lock_held(busy.effective_database_url):
            response = client.get("/v1/audit/checkpoint")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            assert checkpointer.run_once() is None  # logged, not raised
        assert [c.size for c in _checkpoints(engine)] == []
        made = checkpointer.run_once()
        assert made is not None and made.size == 2
    finally:
        busy_engine.dispose()


@pytest.mark.parametrize("freshness", ["5", "0"])
def test_a_cli_command_that_wrote_to_the_log_leaves_it_signed(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, freshness: str
) -> None:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("LETHE_CHECKPOINT_FRESHNESS_SECONDS", freshness)
    args = ["events", "add", "--type", "call.closed", "--context", "EC/2024/CNECT/443651"]
    result = CliRunner().invoke(cli_app, [*args, "--occurred-at", "2024-03-27T12:00:00+01:00"])
    assert result.exit_code == 0, result.output
    size = _log_size(engine)
    assert size >= 1
    expected = [size] if freshness != "0" else []
    assert [c.size for c in _checkpoints(engine)] == expected
    CliRunner().invoke(cli_app, ["audit", "public-key"])  # wrote nothing: signs nothing
    assert [c.size for c in _checkpoints(engine)] == expected
