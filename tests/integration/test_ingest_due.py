"""The cached due-date evaluation agrees with a fresh evaluation of every record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from policies import service as policies
from policies.evaluate import evaluate
from policies.loader import registry_dir
from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work
from records.models import PersonalRecord
from retention import ingest
from retention.due import Evaluator, due_of

CALL = "EC/2024/CNECT/443651"
NOW = datetime(2024, 4, 2, 9, tzinfo=UTC)


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=NOW
        )
        records.add_event(
            s,
            type="call.closed",
            context=CALL,
            occurred_at=datetime.fromisoformat("2024-03-27T12:00:00+01:00"),
            actor="test",
            now=NOW - timedelta(days=1),
        )
    return engine


# Around midnight in Brussels (UTC+1 in March): 22:59Z and 23:00Z are on different local days.
INSTANTS = [
    datetime(2024, 3, 1, 22, 59, tzinfo=UTC),
    datetime(2024, 3, 1, 23, 0, tzinfo=UTC),
    datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
    datetime(2024, 3, 30, 23, 30, tzinfo=UTC),  # the night the clocks change
    datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
]
CASES = [
    ("application", "candidate", "invited"),
    ("application", "candidate", "not_selected"),
    ("user_account", "external_user", None),
    ("survey_answers", "candidate", None),
    ("analytics", None, None),
]


@pytest.mark.parametrize(("category", "subject_category", "outcome"), CASES)
def test_cached_due_dates_equal_fresh_evaluations(
    loaded: Engine, category: str, subject_category: str | None, outcome: str | None
) -> None:
    with Session(loaded) as s:
        cached = Evaluator(s, now=NOW)
        row, document = policies.current(s, "DPR-EC-01488")
        for collected_at in INSTANTS:
            _, due = cached.decide_due(
                policy="DPR-EC-01488",
                category=category,
                subject_category=subject_category,
                outcome=outcome,
                source=None,
                context=CALL,
                collected_at=collected_at,
            )
            fresh = evaluate(
                document,
                version=row.version,
                category=category,
                subject_category=subject_category,
                outcome=outcome,
                source=None,
                context=CALL,
                collected_at=collected_at,
                fields={},
                events=Evaluator(s, now=NOW).events(CALL),
                now=NOW,
            )
            assert due == due_of(fresh), (category, collected_at)


def test_records_collected_either_side_of_local_midnight_get_different_days(
    loaded: Engine,
) -> None:
    with Session(loaded) as s:
        evaluator = Evaluator(s, now=NOW)
        dues = [
            evaluator.decide_due(
                policy="DPR-EC-01488",
                category="application",
                subject_category="candidate",
                outcome="invited",
                source=None,
                context=CALL,
                collected_at=moment,
            )[1].due_at
            for moment in INSTANTS[:3]
        ]
    assert dues[0] == dues[2]
    assert dues[0] is not None and dues[1] is not None
    assert dues[1] - dues[0] == timedelta(days=1)


def test_an_event_recomputes_every_record_it_triggers_batch_by_batch(
    loaded: Engine, tmp_path: Path
) -> None:
    keyring = Keyring.load_or_create(tmp_path / "kek.json")
    other_call = "EC/2024/CNECT/443650"
    with unit_of_work(loaded) as s:
        subject = records.create_subject(s, keyring=keyring, email="a@example.eu", now=NOW)
        for n in range(7):
            records.put_record(
                s,
                keyring=keyring,
                subject_id=subject.id,
                policy="DPR-EC-01488",
                policy_version=1,
                category="application",
                subject_category="candidate",
                outcome="not_selected",
                context=other_call if n == 6 else "EC/2024/CNECT/443699",
                collected_at=NOW,
                payload={"n": n},
                payload_hash=f"{n:064d}",
                due=records.Due(),
                now=NOW,
            )
    with unit_of_work(loaded) as s:
        event = ingest.record_event(
            s,
            type="call.closed",
            context="EC/2024/CNECT/443699",
            occurred_at=datetime.fromisoformat("2024-05-01T12:00:00+02:00"),
            actor="test",
            now=NOW,
            batch_size=2,
        )
        assert event.affected_records == 6
    with Session(loaded) as s:
        dues = {r.context: r.due_at for r in s.scalars(select(PersonalRecord))}
        untouched = s.scalars(
            select(PersonalRecord).where(col(PersonalRecord.context) == other_call)
        ).one()
        assert untouched.due_at is None
        touched = s.scalars(
            select(PersonalRecord).where(col(PersonalRecord.context) != other_call)
        ).all()
    assert len(touched) == 6 and len(dues) == 2
    assert {r.due_at for r in touched} == {datetime(2025, 5, 1, 22, 0, tzinfo=UTC)}
    assert {r.rule_id for r in touched} == {"non-selected-candidates"}
