"""The purge erases due external rows at the source, inside its batch protocol, certified."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from connectors.registry import Registry, Secrets
from connectors.source import keyed_hash
from records.crypto import Keyring
from records.db import unit_of_work
from records.models import PersonalRecord
from retention import external, ingest, purge
from retention.models import PurgeBatch
from tests.integration.test_connectors_support import (
    CALL,
    CANARY,
    HASH_KEY,
    SOURCES,
    SourceDb,
    add_candidates,
    capture_logs,
    make_source,
)
from tests.integration.test_connectors_sync import CLOSED, START, load_policy, run_sync
from tests.integration.test_purge import certificate_of, make_ctx, run_purge

AFTER_A_YEAR = CLOSED + timedelta(days=367)


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest) -> Iterator[SourceDb]:
    yield from make_source(request.param)


def arrange(engine: Engine, src: SourceDb, tmp_path: Path, outcomes: list[str]) -> Keyring:
    load_policy(engine)
    keyring = Keyring.generate(now=START)
    add_candidates(src, outcomes, submitted=START)
    run_sync(engine, src, tmp_path, keyring, START)
    with unit_of_work(engine) as s:
        ingest.record_event(
            s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="test", now=CLOSED
        )
    return keyring


def ctx_with(tmp_path: Path, actions: external.ExternalActions | None) -> purge.PurgeContext:
    ctx = make_ctx(tmp_path)
    ctx.external = actions
    return ctx


def locations(engine: Engine) -> dict[tuple[str | None, str | None], PersonalRecord]:
    with Session(engine) as s:
        found = s.scalars(
            select(PersonalRecord).where(col(PersonalRecord.external_connector).is_not(None))
        )
        return {(r.external_table, r.external_key): r for r in found}


def test_due_rows_are_deleted_or_masked_at_the_source_children_first(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    arrange(engine, source, tmp_path, ["not_selected", "not_invited", "invited"])
    actions = source.actions(tmp_path)
    run = run_purge(engine, ctx_with(tmp_path, actions), now=AFTER_A_YEAR)
    assert run.status == "completed"
    # Non-selected candidates' answers and attachments are gone at the source (attachments
    # first: they refer to answers); the invited candidate's rows are untouched.
    assert [a["respondent_id"] for a in source.rows(source.answer)] == [3, 3]
    assert [f["answer_id"] for f in source.rows(source.attachment)] == [300, 301]
    people = {p["id"]: p for p in source.rows(source.respondent)}
    for n in (1, 2):
        assert people[n]["email"].startswith("lethe-hmac:") and CANARY not in people[n]["email"]
        assert people[n]["full_name"] is None and people[n]["external_ref"] == "erased"
    assert people[3]["email"] == f"cand3-{CANARY}"

    with Session(engine) as s:
        cert = certificate_of(s, run)
        entries = [e.body for e in s.scalars(select(AuditEntry))]
    assert cert["counts"]["deleted"] == 10 and cert["counts"]["failed"] == 0
    assert CANARY not in json.dumps(cert) and all(CANARY not in b for b in entries)
    kept = locations(engine)
    # Deleted rows lose their record; masked rows keep one as an anonymised tombstone, so the
    # next sync does not index the masked row as someone new.
    assert ("answer", "[100]") not in kept
    assert kept[("respondent", "[1]")].status == "anonymised"
    again = run_sync(engine, source, tmp_path, Keyring.generate(now=START), AFTER_A_YEAR)
    assert again.total("new") == 0 and again.total("gone") == 0

    # Idempotent: a second run finds nothing due and the source stays as it is.
    second = run_purge(engine, ctx_with(tmp_path, actions), now=AFTER_A_YEAR + timedelta(days=1))
    with Session(engine) as s:
        assert certificate_of(s, second)["counts"]["deleted"] == 0
    assert source.count(source.answer) == 2


def test_a_row_the_source_refuses_to_delete_is_failed_and_retried_next_run(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    logs = capture_logs()
    arrange(engine, source, tmp_path, ["not_selected"])
    with source.engine.begin() as conn:
        conn.execute(source.review_note.insert(), [{"id": 1, "answer_id": 100, "note": "n"}])
    actions = source.actions(tmp_path)
    run = run_purge(engine, ctx_with(tmp_path, actions), now=AFTER_A_YEAR)
    assert run.status == "partial"
    with Session(engine) as s:
        cert = certificate_of(s, run)
    [failure] = cert["failed"]
    assert failure["error"].startswith("error:")
    failed_id = failure["record_id"]
    assert failed_id not in cert["destroyed"]
    assert cert["counts"]["deleted"] == 4 and cert["counts"]["failed"] == 1
    assert [a["id"] for a in source.rows(source.answer)] == [100]
    assert str(locations(engine)[("answer", "[100]")].id) == failed_id
    written = logs.getvalue()
    assert "retention.external.erase_failed" in written and CANARY not in written
    assert CANARY not in json.dumps(cert)

    with source.engine.begin() as conn:
        conn.execute(source.review_note.delete())
    later = run_purge(engine, ctx_with(tmp_path, actions), now=AFTER_A_YEAR + timedelta(days=1))
    assert later.status == "completed"
    with Session(engine) as s:
        assert certificate_of(s, later)["destroyed"] == [failed_id]
    assert source.count(source.answer) == 0


def test_an_unreachable_source_fails_every_row_and_reports_nothing_done(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    arrange(engine, source, tmp_path, ["not_selected"])
    mapping = source.mapping()
    wrong = mapping.url.replace("5432", "5439").replace("3306", "3309")
    registry = Registry(tmp_path / "none", Secrets({"eusurvey": {"hash_key": HASH_KEY}}, {}))
    registry.add(mapping.model_copy(update={"url": wrong}))
    run = run_purge(
        engine, ctx_with(tmp_path, external.ExternalActions(registry)), now=AFTER_A_YEAR
    )
    with Session(engine) as s:
        cert = certificate_of(s, run)
    assert run.status == "partial"
    assert cert["counts"]["deleted"] == 0 and cert["counts"]["failed"] == 5
    assert cert["subject_keys_destroyed"] == []
    assert source.count(source.answer) == 2 and source.count(source.attachment) == 2
    assert len(locations(engine)) == 5
    # Without connectors wired at all an external record is never reported as done either.
    nothing = run_purge(engine, ctx_with(tmp_path, None), now=AFTER_A_YEAR + timedelta(days=1))
    with Session(engine) as s:
        assert certificate_of(s, nothing)["counts"]["failed"] == 5


def test_dry_run_shows_the_sql_and_changes_nothing(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    arrange(engine, source, tmp_path, ["not_selected", "invited"])
    actions = source.actions(tmp_path)
    before = [source.rows(t) for t in (source.respondent, source.answer, source.attachment)]
    run = run_purge(engine, ctx_with(tmp_path, actions), now=AFTER_A_YEAR, dry_run=True)
    with Session(engine) as s:
        planned = purge.plan(s, run.id)["records"]["deleted"]["record_ids"]
        sql = external.dry_run_sql(s, record_ids=[_uuid(i) for i in planned], actions=actions)
    assert len(planned) == 5
    text = "\n".join(sql)
    assert text.index("DELETE FROM attachment") < text.index("DELETE FROM answer")
    assert text.index("DELETE FROM answer") < text.index("UPDATE respondent")
    assert "100" in text and "300" not in text  # the invited candidate's rows are not planned
    assert "full_name=NULL" in text.replace(" ", "")
    after = [source.rows(t) for t in (source.respondent, source.answer, source.attachment)]
    assert after == before
    assert len(locations(engine)) == 10


def _uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def test_a_batch_rolled_back_after_the_source_erase_is_finished_by_the_rerun(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    arrange(engine, source, tmp_path, ["not_selected"])
    ctx = ctx_with(tmp_path, source.actions(tmp_path))
    crashes: list[int] = []

    def crash_once(session: Session, subjects: list[uuid.UUID], now: Any) -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("the worker dies inside the batch, after the source erase")

    ctx.on_subjects_erased = crash_once
    with pytest.raises(RuntimeError):
        run_purge(engine, ctx, now=AFTER_A_YEAR)
    # The source committed its part; Lethe's batch rolled back whole: nothing is certified yet.
    assert source.count(source.answer) == 0
    assert len(locations(engine)) == 5
    run = run_purge(engine, ctx, now=AFTER_A_YEAR)
    assert run.status == "completed"
    with Session(engine) as s:
        cert = certificate_of(s, run)
    assert cert["counts"]["deleted"] == 5 and cert["failed"] == []
    # Masked once: the rerun does not hash the already hashed address again.
    [person] = source.rows(source.respondent)
    assert person["email"] == keyed_hash(HASH_KEY.encode(), f"cand1-{CANARY}")


def test_an_invalid_registry_file_fails_the_external_rows_not_the_run(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    arrange(engine, source, tmp_path, ["not_selected"])
    broken = tmp_path / "registry"
    broken.mkdir()
    (broken / "eusurvey.yaml").write_text("format: lethe.connector/1\nname: eusurvey\n")
    actions = external.ExternalActions(Registry(broken, Secrets({}, {})))
    run = run_purge(engine, ctx_with(tmp_path, actions), now=AFTER_A_YEAR)
    assert run.status == "partial"
    with Session(engine) as s:
        cert = certificate_of(s, run)
    assert {f["error"] for f in cert["failed"]} == {"error:mapping-invalid"}
    assert len(cert["failed"]) == 5 and cert["counts"]["deleted"] == 0
    assert source.count(source.answer) == 2


def test_once_a_batch_met_only_external_records_the_next_ones_are_larger(
    engine: Engine, source: SourceDb, tmp_path: Path
) -> None:
    # 6 candidates: 6 respondents, 12 answers, 12 attachments, all due.
    arrange(engine, source, tmp_path, ["not_selected"] * 6)
    ctx = make_ctx(tmp_path, batch_size=4, external_batch_size=10)
    ctx.external = source.actions(tmp_path)
    run = run_purge(engine, ctx, now=AFTER_A_YEAR)
    assert run.status == "completed"
    with Session(engine) as s:
        sizes = list(
            s.scalars(
                select(col(PurgeBatch.deleted_count))
                .where(col(PurgeBatch.run_id) == run.id)
                .order_by(col(PurgeBatch.id))
            )
        )
        assert certificate_of(s, run)["counts"]["deleted"] == 30
    assert sizes == [4, 10, 10, 6]
    assert source.count(source.answer) == 0 and source.count(source.attachment) == 0
