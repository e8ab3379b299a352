"""Appending entries: dense indexes, canonical bodies, refusals, database guards."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from audit_log import service
from audit_log.errors import AuditDetailsError
from audit_log.models import AuditEntry
from records.db import unit_of_work

NOW = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)


def test_entries_get_dense_indexes_and_canonical_bodies(engine: Engine) -> None:
    subject = uuid.uuid4()
    with unit_of_work(engine) as s:
        first = service.append(s, action="records.subject.created", actor="cli", now=NOW)
        second = service.append(
            s,
            action="records.record.ingested",
            actor="key:abc",
            now=NOW,
            subject_id=subject,
            target="record:1",
            details={"b": [1, "x"], "a": {"z": True, "y": None}, "é": "ü"},
        )
    assert (first.idx, second.idx) == (0, 1)
    with unit_of_work(engine) as s:
        third = service.append(s, action="x.y", actor="cli", now=NOW)
    assert third.idx == 2
    body = json.loads(second.body)
    assert body == {
        "v": 1,
        "index": 1,
        "at": "2026-03-27T11:00:00.000000Z",
        "action": "records.record.ingested",
        "actor": "key:abc",
        "subject": str(subject),
        "target": "record:1",
        "details": {"a": {"y": None, "z": True}, "b": [1, "x"], "é": "ü"},
    }
    assert second.body == json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert "é" in second.body  # UTF-8, not \\u escapes


def test_a_rolled_back_append_leaves_no_gap(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        service.append(s, action="a.b", actor="cli", now=NOW)
    with pytest.raises(RuntimeError), unit_of_work(engine) as s:
        service.append(s, action="a.b", actor="cli", now=NOW)
        raise RuntimeError("the caller's change failed")
    with unit_of_work(engine) as s:
        entry = service.append(s, action="a.b", actor="cli", now=NOW)
    assert entry.idx == 1


def test_a_rolled_back_savepoint_leaves_no_gap(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        service.append(s, action="a.b", actor="cli", now=NOW)
        nested = s.begin_nested()
        service.append(s, action="a.c", actor="cli", now=NOW)
        nested.rollback()
        last = service.append(s, action="a.d", actor="cli", now=NOW)
    assert last.idx == 1
    with Session(engine) as s:
        kept = s.exec(select(AuditEntry).order_by(col(AuditEntry.idx))).all()
    assert [(e.idx, e.action) for e in kept] == [(0, "a.b"), (1, "a.d")]


def test_a_released_savepoint_keeps_its_entries(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        with s.begin_nested():
            service.append(s, action="a.b", actor="cli", now=NOW)
        service.append(s, action="a.c", actor="cli", now=NOW)
    with Session(engine) as s:
        assert service.size(s) == 2


def test_the_transaction_sees_its_own_entries_and_an_abandoned_one_leaves_none(
    engine: Engine,
) -> None:
    with Session(engine) as s:
        service.append(s, action="a.b", actor="cli", now=NOW)
        assert service.size(s) == 1  # queries in the transaction see the entry
        s.close()  # abandoned without a commit
        service.append(s, action="a.c", actor="cli", now=NOW)
        s.commit()
    with Session(engine) as s:
        rows = s.exec(select(AuditEntry)).all()
    assert [(e.idx, e.action) for e in rows] == [(0, "a.c")]


@pytest.mark.parametrize(
    "details",
    [{"score": 0.5}, {"nested": [{"x": 1.0}]}, {"who": "canary.person@example.org"}, {1: "x"}],
)
def test_floats_and_personal_data_are_refused(
    engine: Engine, details: dict[object, object]
) -> None:
    with unit_of_work(engine) as s, pytest.raises(AuditDetailsError) as caught:
        service.append(s, action="a.b", actor="cli", now=NOW, details=details)  # type: ignore[arg-type]
    assert "canary.person" not in caught.value.detail


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_entry SET action = 'x'", "DELETE FROM audit_entry"]
)
def test_the_database_refuses_update_and_delete(engine: Engine, statement: str) -> None:
    with unit_of_work(engine) as s:
        service.append(s, action="a.b", actor="cli", now=NOW)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with Session(engine) as s:
        assert service.size(s) == 1


def test_a_subject_is_only_ever_a_uuid(engine: Engine) -> None:
    with unit_of_work(engine) as s, pytest.raises(AuditDetailsError) as caught:
        service.append(
            s,
            action="a.b",
            actor="cli",
            now=NOW,
            subject_id="Canary Person",  # type: ignore[arg-type]
        )
    assert "Canary" not in caught.value.detail
