"""The DPR-EC-01488 year, with the candidates' data living in the survey tool's own databases.

The same story as `test_retention_year.py` (call EC/2024/CNECT/443651 closes on 27 March 2024
at 12:00 CET; non-selected candidates' data is kept "for 1 year after the closure of the call";
invited and selected candidates pass to DPR-02054), but Lethe holds none of the candidates'
data: it lives in a PostgreSQL database (the survey tool) and a MariaDB database (its archive),
and Lethe governs it through two connectors, synced monthly. The nightly purge (02:00
Europe/Brussels) runs every night for 400 nights with the clock frozen at each fire time. At the
end the non-selected candidates' rows are gone at both sources (answers and attachments
deleted, respondents masked), the held candidate's and the handed-over candidates' rows are
untouched, every run is certified, the trail says so and `lethe audit verify` passes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from typer.testing import CliRunner

from audit_log.jobs import checkpoint_job
from audit_log.models import AuditEntry
from audit_log.signing import NoteSigner
from connectors.registry import Registry, Secrets
from lethe.cli import app
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import unit_of_work
from records.models import PersonalRecord
from retention import external, holds, ingest, jobs, purge
from retention.models import PurgeRun
from tests.integration.test_connectors_support import (
    CALL,
    CANARY,
    HASH_KEY,
    SourceDb,
    add_candidates,
    make_source,
)
from tests.integration.test_purge import DPO

CLOSED = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)  # 12:00 CET
START = CLOSED - timedelta(days=20)
FIRST_NIGHT = datetime(2024, 3, 28, 1, 0, tzinfo=UTC)  # 02:00 CET
NIGHTS = 400
SYNC_EVERY = 30  # nights

EXPIRING = ("not_selected", "not_invited")


def outcome_of(n: int) -> str:
    return ["not_selected", "not_selected", "not_invited", "invited", "selected"][n % 5]


@pytest.fixture
def survey() -> Iterator[SourceDb]:
    yield from make_source("postgresql")


@pytest.fixture
def archive() -> Iterator[SourceDb]:
    yield from make_source("mariadb")


def rows_by_respondent(src: SourceDb) -> dict[str, list[int]]:
    answers = src.rows(src.answer)
    files = src.rows(src.attachment)
    answer_owner = {a["id"]: a["respondent_id"] for a in answers}
    return {
        "answers": sorted(a["respondent_id"] for a in answers),
        "attachments": sorted(answer_owner[f["answer_id"]] for f in files),
    }


@pytest.mark.slow
def test_a_year_of_nightly_purges_erases_non_selected_candidates_at_both_sources(
    engine: Engine, settings: Settings, survey: SourceDb, archive: SourceDb, tmp_path: Path
) -> None:
    keyring = Keyring.generate(now=START - timedelta(days=10))
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=START
        )
    # Candidates 1-10 applied in the survey tool, 6-15 are in the archive: 6-10 are in both
    # (one address, one subject).
    add_candidates(survey, [outcome_of(n) for n in range(1, 11)], submitted=START, first_id=1)
    add_candidates(archive, [outcome_of(n) for n in range(6, 16)], submitted=START, first_id=6)
    registry = Registry(
        tmp_path / "no-registry",
        Secrets({"eusurvey": {"hash_key": HASH_KEY}, "archive": {"hash_key": HASH_KEY}}, {}),
    )
    registry.add(survey.mapping())
    registry.add(archive.mapping(name="archive"))
    actions = external.ExternalActions(registry)

    def sync_all(now: datetime) -> dict[str, external.SyncResult]:
        return {
            name: external.sync(
                engine, registry=registry, name=name, keyring=keyring, actor="sync", now=now
            )
            for name in ("eusurvey", "archive")
        }

    first = sync_all(START + timedelta(days=1))
    assert first["eusurvey"].total("new") == 10 * 5 and first["archive"].total("new") == 10 * 5
    with unit_of_work(engine) as s:
        ingest.record_event(
            s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="test", now=CLOSED
        )
    with Session(engine) as s:
        indexed = list(
            s.scalars(
                select(PersonalRecord).where(col(PersonalRecord.external_connector).is_not(None))
            )
        )
    assert len({r.subject_id for r in indexed}) == 15
    due_at = {r.id: r.due_at for r in indexed}
    expiring = [r for r in indexed if r.outcome in EXPIRING]
    assert {due_at[r.id] for r in expiring} == {datetime(2025, 3, 27, 23, 0, tzinfo=UTC)}

    # Candidate 1 complained to the EDPS: a hold on the subject keeps their rows everywhere.
    held = next(r for r in indexed if r.external_table == "respondent" and r.external_key == "[1]")
    with unit_of_work(engine) as s:
        hold = holds.place_hold(
            s,
            scope=holds.Scope.parse({"subject_id": str(held.subject_id)}),
            reason="complaint to the EDPS pending",
            case_reference="EDPS 2025-0001",
            actor=DPO,
            now=CLOSED + timedelta(days=200),
        )

    signer = NoteSigner.load_or_create(settings.effective_audit_key_file, settings.audit_log_origin)
    ctx = purge.PurgeContext(
        signer=signer,
        external=actions,
        checkpoint=lambda eng, now: checkpoint_job(eng, signer, now),
    )
    spec = jobs.purge_job_spec(engine, ctx=ctx, cron="0 2 * * *", timezone="Europe/Brussels")
    scheduler = jobs.JobScheduler(engine)
    scheduler.add(spec)
    fires = [FIRST_NIGHT]
    while len(fires) < NIGHTS:
        following = jobs.next_fire_after(spec.trigger, fires[-1])
        assert following is not None
        fires.append(following)
    gone_at: dict[uuid.UUID, datetime] = {}
    later_syncs: list[dict[str, external.SyncResult]] = []
    with freeze_time(FIRST_NIGHT) as frozen:
        for night, fire in enumerate(fires):
            frozen.move_to(fire)
            if night == 100:
                # The survey tool drops one not-selected candidate's attachment itself.
                with survey.engine.begin() as conn:
                    conn.execute(survey.attachment.delete().where(survey.attachment.c.id == 2000))
            if night % SYNC_EVERY == 0:
                later_syncs.append(sync_all(fire - timedelta(minutes=30)))
            assert scheduler.run_now(jobs.PURGE_JOB), fire
            with Session(engine) as s:
                present = set(
                    s.execute(
                        select(col(PersonalRecord.id)).where(
                            col(PersonalRecord.status) != "anonymised"
                        )
                    ).scalars()
                )
            for r in expiring:
                if r.id not in present and r.id not in gone_at:
                    gone_at[r.id] = fire
    registry.dispose()

    assert sum(s["eusurvey"].tables["attachment"].gone for s in later_syncs) == 1
    assert all(s[n].total("new") == 0 for s in later_syncs for n in s)

    # On time: gone by the due instant, and not earlier than the last night before it.
    dropped_by_source = {
        r.id for r in expiring if r.external_table == "attachment" and r.external_key == "[2000]"
    }
    for r in expiring:
        if r.subject_id == held.subject_id:
            assert r.id not in gone_at
            continue
        assert r.id in gone_at, (r.external_connector, r.external_table, r.external_key)
        if r.id in dropped_by_source:
            continue
        due = due_at[r.id]
        assert due is not None and gone_at[r.id] <= due, "overstay"
        following = jobs.next_fire_after(spec.trigger, gone_at[r.id])
        assert following is not None and following > due, "deleted earlier than needed"

    # At the sources: only the held candidate's and the handed-over candidates' answers and
    # attachments remain; the non-selected respondents are masked, the others untouched.
    kept_ids = {1} | {n for n in range(1, 16) if outcome_of(n) not in EXPIRING}
    for src, ids in ((survey, range(1, 11)), (archive, range(6, 16))):
        expected = sorted(n for n in ids if n in kept_ids for _ in range(2))
        remaining = rows_by_respondent(src)
        assert remaining["answers"] == expected
        assert remaining["attachments"] == [n for n in expected if not (src is survey and n == 2)]
        for person in src.rows(src.respondent):
            n = person["id"]
            if n in kept_ids:
                assert person["email"] == f"cand{n}-{CANARY}"
            else:
                assert person["email"].startswith("lethe-hmac:") and person["full_name"] is None

    # Every run is completed and signed; the certificates name what was destroyed at the
    # sources and what the hold kept, and carry no personal data.
    with Session(engine) as s:
        runs = list(s.execute(select(PurgeRun).order_by(col(PurgeRun.created_at))).scalars())
        trail = [e for e in s.scalars(select(AuditEntry))]
    assert len(runs) == NIGHTS
    assert all(r.status == "completed" and r.signature for r in runs)
    certificates: list[dict[str, Any]] = [json.loads(r.certificate or "{}") for r in runs]
    destroyed = {rid for c in certificates for rid in c["destroyed"]}
    expected_destroyed = {
        str(r.id)
        for r in expiring
        if r.subject_id != held.subject_id and r.id not in dropped_by_source
    }
    assert destroyed == expected_destroyed
    assert all(c["failed"] == [] for c in certificates)
    held_reports = [c["skipped_hold"] for c in certificates if c["skipped_hold"]]
    assert held_reports and all(
        {k for item in rep for k in item["kept_by"]} == {str(hold.id)} for rep in held_reports
    )
    assert all(CANARY not in (r.certificate or "") for r in runs)
    purged = [e for e in trail if e.action == "retention.batch.purged"]
    assert {rid for e in purged for rid in json.loads(e.body)["details"].get("deleted", [])} == (
        expected_destroyed
    )
    assert all(CANARY not in e.body and "Candidate" not in e.body for e in trail)

    # The DPO's verifier accepts the whole trail.
    runner = CliRunner()
    env = {
        "LETHE_DATABASE_URL": settings.effective_database_url,
        "LETHE_DATA_DIR": str(settings.data_dir),
        "LETHE_SCHEDULER": "off",
    }
    result = runner.invoke(
        app, ["audit", "verify", "--witness-dir", str(tmp_path / "witness")], env=env
    )
    assert result.exit_code == 0, result.output
