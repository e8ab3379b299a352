"""A rule change pauses the next run for the DPO, and stale due dates are not acted on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from policies import service as policies
from policies.loader import registry_dir
from records.db import unit_of_work
from records.models import PersonalRecord
from retention import purge
from retention.models import RunStatus
from tests.integration.test_purge import (
    DPO,
    make_ctx,
    make_keyring,
    make_record,
    make_subject,
    remaining,
    run_purge,
)

T = datetime(2025, 4, 1, 0, 0, tzinfo=UTC)


def _load(engine: Engine, *, title_suffix: str, now: datetime) -> int:
    text = (registry_dir() / "DPR-EC-01488.yaml").read_text()
    marker = "title: Use of EU Survey"
    assert marker in text
    changed = text.replace(marker, marker + title_suffix, 1) if title_suffix else text
    with unit_of_work(engine) as s:
        result = policies.load_policy_file(
            s, path_or_text=changed, actor="test", now=now, source_name="DPR-EC-01488.yaml"
        )
        version = result.version if hasattr(result, "version") else None
    with Session(engine) as s:
        row, _doc = policies.current(s, "DPR-EC-01488")
        assert version is None or version == row.version
        return row.version


def test_a_run_after_a_rule_change_pauses_and_stale_records_are_kept(
    engine: Engine, tmp_path: Path
) -> None:
    assert _load(engine, title_suffix="", now=T - timedelta(days=10)) == 1
    keyring = make_keyring()
    ctx = make_ctx(tmp_path)
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        first = make_record(s, keyring, subject, due_at=T, policy_version=1)
    assert run_purge(engine, ctx, now=T + timedelta(days=1)).status == RunStatus.completed
    assert first.id not in remaining(engine)

    with unit_of_work(engine) as s:
        other = make_subject(s, keyring, n=2)
        stale = make_record(s, keyring, other, due_at=T + timedelta(days=2), policy_version=1)
    assert _load(engine, title_suffix=" (amended)", now=T + timedelta(days=2)) == 2
    paused = run_purge(engine, ctx, now=T + timedelta(days=3))
    assert paused.status == RunStatus.paused and paused.pause_reason == "rule_change"
    assert stale.id in remaining(engine)

    with unit_of_work(engine) as s:
        purge.approve_run(s, run_id=paused.id, actor=DPO, now=T + timedelta(days=3))
    done = purge.execute(engine, paused.id, clock=lambda: T + timedelta(days=3), ctx=ctx)
    assert done.status == RunStatus.completed
    # decided under version 1, not yet recomputed under version 2: kept and reported
    assert stale.id in remaining(engine)
    with Session(engine) as s:
        assert purge.counts(s, done.id)["skipped_stale"] == 1
        kept = s.get(PersonalRecord, stale.id)
        assert kept is not None and kept.payload is not None
