"""`lethe connectors test|sync` and `lethe purge --dry-run` with a connector, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import create_engine
from typer.testing import CliRunner

from lethe.cli import app
from lethe.settings import Settings
from records.db import unit_of_work
from retention import ingest
from tests.integration.test_connectors_support import (
    CALL,
    CANARY,
    HASH_KEY,
    MAPPING_TEXT,
    SOURCES,
    SourceDb,
    add_candidates,
    make_source,
)
from tests.integration.test_connectors_sync import CLOSED, START, load_policy


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest) -> Iterator[SourceDb]:
    yield from make_source(request.param)


def cli_env(settings: Settings, src: SourceDb, tmp_path: Path) -> dict[str, str]:
    registry = tmp_path / "connectors"
    registry.mkdir()
    (registry / "eusurvey.yaml").write_text(
        MAPPING_TEXT.replace(
            "url: postgresql+psycopg://eusurvey@127.0.0.1:5432/eusurvey", f"url: {src.url}"
        )
    )
    return {
        "LETHE_DATABASE_URL": settings.effective_database_url,
        "LETHE_DATA_DIR": str(settings.data_dir),
        "LETHE_SCHEDULER": "off",
        "LETHE_CONNECTORS_DIR": str(registry),
        "LETHE_CONNECTOR_EUSURVEY_HASH_KEY": HASH_KEY,
    }


def test_cli_tests_syncs_and_shows_the_dry_run_sql(
    settings: Settings, source: SourceDb, tmp_path: Path
) -> None:
    engine = create_engine(settings.effective_database_url)
    load_policy(engine)
    add_candidates(source, ["not_selected", "invited"], submitted=START)
    env = cli_env(settings, source, tmp_path)
    runner = CliRunner()

    tested = runner.invoke(app, ["connectors", "test", "eusurvey"], env=env)
    assert tested.exit_code == 0, tested.output
    assert "every mapped table and column exists" in tested.output

    synced = runner.invoke(app, ["connectors", "sync", "eusurvey"], env=env)
    assert synced.exit_code == 0, synced.output
    assert "new 10, changed 0, gone 0" in synced.output
    assert CANARY not in synced.output

    with unit_of_work(engine) as s:
        ingest.record_event(
            s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="test", now=CLOSED
        )
    with freeze_time(datetime(2025, 4, 1, 9, 0, tzinfo=UTC)):
        dry = runner.invoke(app, ["purge", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    flat = dry.output.replace("\n", " ")
    assert "DELETE FROM attachment" in flat and "UPDATE respondent" in flat
    assert flat.index("DELETE FROM attachment") < flat.index("DELETE FROM answer")
    assert source.count(source.answer) == 4  # nothing ran

    missing = runner.invoke(app, ["connectors", "test", "nope"], env=env)
    assert missing.exit_code == 1 and "no connector nope" in missing.output
    engine.dispose()
