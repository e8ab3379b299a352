"""`sync` indexes a source's rows as governed records, on real PostgreSQL and MariaDB sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from lethe.settings import Settings
from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import make_engine, unit_of_work
from records.models import PersonalRecord
from retention import external, ingest
from tests.integration.test_connectors_support import (
    CALL,
    CANARY,
    SOURCES,
    SourceDb,
    add_candidates,
    capture_logs,
    make_source,
)


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest) -> Iterator[SourceDb]:
    yield from make_source(request.param)


START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CLOSED = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)


def load_policy(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=START
        )


def run_sync(
    engine: Engine, src: SourceDb, tmp_path: Path, keyring: Keyring, now: datetime
) -> external.SyncResult:
    registry = src.registry(tmp_path)
    try:
        return external.sync(
            engine,
            registry=registry,
            name="eusurvey",
            keyring=keyring,
            actor="test",
            now=now,
            batch_size=3,  # several keyset batches per table
        )
    finally:
        registry.dispose()


def external_records(engine: Engine) -> list[PersonalRecord]:
    with Session(engine) as s:
        return list(
            s.scalars(
                select(PersonalRecord).where(col(PersonalRecord.external_connector).is_not(None))
            )
        )


def test_sync_indexes_rows_without_their_payload_and_the_event_sets_due_dates(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    logs = capture_logs()
    load_policy(engine)
    keyring = Keyring.generate(now=START)
    add_candidates(source, ["not_selected", "invited", "not_invited"], submitted=START)
    result = run_sync(engine, source, tmp_path, keyring, START + timedelta(days=1))
    assert result.tables["respondent"].new == 3
    assert result.tables["answer"].new == 6
    assert result.tables["attachment"].new == 6
    found = external_records(engine)
    assert len(found) == 15
    assert all(r.payload is None for r in found)
    # Until the call closes nothing is due for deletion.
    assert all(r.due_at is None for r in found if r.action == "delete")
    by_table = {(r.external_table, json.loads(r.external_key or "[]")[0]): r for r in found}
    resp = by_table[("respondent", 1)]
    assert resp.category == "contact_details" and resp.outcome == "not_selected"
    assert resp.context == CALL and resp.collected_at == START
    # Answers of one respondent belong to the respondent's subject (through the join).
    assert by_table[("answer", 100)].subject_id == resp.subject_id
    assert by_table[("attachment", 1000)].subject_id == resp.subject_id
    # Attachments sort before answers, answers before respondents (the erasure order).
    assert by_table[("attachment", 1000)].id < by_table[("answer", 100)].id < resp.id
    # Within a table, ids follow the order the sync wrote the rows (source key order), so a
    # purge batch walking due records by id deletes index rows stored side by side.
    for table in ("respondent", "answer", "attachment"):
        in_key_order = [r.id for (t, _), r in sorted(by_table.items()) if t == table]
        assert in_key_order == sorted(in_key_order), table

    with unit_of_work(engine) as s:
        ingest.record_event(
            s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="test", now=CLOSED
        )
    due = {(r.external_table, r.external_key): r for r in external_records(engine)}
    not_selected = due[("answer", "[100]")]
    assert not_selected.due_at is not None and not_selected.due_at > CLOSED + timedelta(days=364)
    assert not_selected.action == "delete"
    assert due[("answer", "[200]")].action == "handover"

    # Nothing of the source's values is in the audit trail.
    with Session(engine) as s:
        bodies = [e.body for e in s.scalars(select(AuditEntry))]
    assert bodies and all(CANARY not in b and "Candidate" not in b for b in bodies)
    written = logs.getvalue()
    assert "retention.external.synced" in written and CANARY not in written


def test_second_sync_picks_up_new_changed_and_deleted_rows(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    load_policy(engine)
    keyring = Keyring.generate(now=START)
    add_candidates(source, ["not_selected", "not_selected"], submitted=START)
    run_sync(engine, source, tmp_path, keyring, START)
    with unit_of_work(engine) as s:
        ingest.record_event(
            s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="test", now=CLOSED
        )
    again = run_sync(engine, source, tmp_path, keyring, CLOSED)
    assert again.total("new") == 0 and again.total("changed") == 0
    assert again.total("unchanged") == 10

    add_candidates(source, ["selected"], submitted=START, first_id=3)
    with source.engine.begin() as conn:
        conn.execute(
            update(source.respondent).where(source.respondent.c.id == 1).values(outcome="invited")
        )
        conn.execute(source.attachment.delete().where(source.attachment.c.id == 2000))
    later = CLOSED + timedelta(days=3)
    result = run_sync(engine, source, tmp_path, keyring, later)
    assert result.tables["respondent"].new == 1
    # Respondent 1's outcome is read by its own row and by its answers' and attachments' joins.
    assert result.tables["respondent"].changed == 1
    assert result.tables["answer"].changed == 2
    assert result.tables["attachment"].changed == 2
    assert result.tables["attachment"].gone == 1
    records = {(r.external_table, r.external_key): r for r in external_records(engine)}
    assert ("attachment", "[2000]") not in records
    assert records[("answer", "[100]")].outcome == "invited"
    assert records[("answer", "[100]")].action == "handover"
    assert records[("answer", "[200]")].action == "delete"
    with Session(engine) as s:
        actions = [e.action for e in s.scalars(select(AuditEntry))]
    assert "retention.external.changed" in actions and "retention.external.gone" in actions


def test_connector_test_checks_tables_and_columns(source: SourceDb, tmp_path: Path) -> None:
    registry = source.registry(tmp_path)
    add_candidates(source, ["not_selected"], submitted=START)
    checks = {c.table: c for c in registry.source("eusurvey").check()}
    assert checks["respondent"].rows == 1 and checks["answer"].rows == 2
    assert all(c.missing_columns == [] for c in checks.values())
    broken = source.mapping()
    table = broken.tables[1].model_copy(update={"collected_at": "answered_at"})
    registry.add(broken.model_copy(update={"tables": [broken.tables[0], table]}))
    registry._sources.clear()
    missing = {c.table: c.missing_columns for c in registry.source("eusurvey").check()}
    assert missing["answer"] == ["answer.answered_at"]
    registry.dispose()


def test_the_scheduled_sync_keeps_going_past_an_unreachable_source(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    load_policy(engine)
    add_candidates(source, ["not_selected"], submitted=START)
    registry = source.registry(tmp_path)
    broken = source.mapping(name="broken")
    registry.add(
        broken.model_copy(
            update={"url": broken.url.replace("5432", "5439").replace("3306", "3309")}
        )
    )
    results = external.sync_all(
        engine, registry=registry, keyring=Keyring.generate(now=START), actor="test", now=START
    )
    registry.dispose()
    assert results["broken"] is None
    synced = results["eusurvey"]
    assert synced is not None and synced.total("new") == 5


def test_a_sync_cron_schedules_the_sync_job(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry

    from lethe.wiring import build_wiring

    engine = make_engine(settings.effective_database_url)
    scheduled = settings.model_copy(update={"connectors_sync_cron": "30 1 * * *"})
    wiring = build_wiring(scheduled, engine, CollectorRegistry())
    assert external.SYNC_JOB in wiring.state["scheduler"].jobs
    plain = build_wiring(settings, engine, CollectorRegistry())
    assert external.SYNC_JOB not in plain.state["scheduler"].jobs
    engine.dispose()


COMPOSITE = """
format: lethe.connector/1
name: composite
url: {url}
policy: DPR-EC-01488
subject_category: candidate
tables:
  - name: draft
    key: [respondent_ref, version]
    category: survey_answers
    subject: {{email: email}}
    collected_at: saved_at
    context_value: survey-1
    erasure: {{action: delete}}
"""


def test_a_composite_key_is_read_by_keyset_and_erased_by_location(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

    from connectors.mapping import parse_mapping

    md = MetaData()
    draft = Table(
        "draft",
        md,
        Column("respondent_ref", String(20), primary_key=True),
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("email", String(320)),
        Column("saved_at", DateTime()),
    )
    md.create_all(source.engine)
    rows = [
        {"respondent_ref": ref, "version": v, "email": f"{ref}-{CANARY}", "saved_at": START}
        for ref in ("a", "b", "c")
        for v in (1, 2, 10)
    ]
    with source.engine.begin() as conn:
        conn.execute(draft.insert(), [{**r, "saved_at": START.replace(tzinfo=None)} for r in rows])
    load_policy(engine)
    registry = source.registry(tmp_path)
    registry.add(parse_mapping(COMPOSITE.format(url=source.url)))
    result = external.sync(
        engine,
        registry=registry,
        name="composite",
        keyring=Keyring.generate(now=START),
        actor="test",
        now=START,
        batch_size=2,
    )
    assert result.tables["draft"].new == 9
    src = registry.source("composite")
    table = registry.get("composite").table("draft")
    keys = [k for batch in src.iter_rows(table, batch_size=4) for k in (r.key for r in batch)]
    assert keys == [f'["{ref}",{v}]' for ref in ("a", "b", "c") for v in (1, 2, 10)]
    assert src.erase(table, ['["b",2]', '["c",10]']) == {'["b",2]': None, '["c",10]': None}
    live = src.read_live(table, ['["a",1]', '["b",2]'])
    assert list(live) == ['["a",1]'] and live['["a",1]']["email"] == f"a-{CANARY}"
    registry.dispose()
