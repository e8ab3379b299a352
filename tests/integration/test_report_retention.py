"""The DPO's retention report: due soon, overdue, held, unresolved hand-overs, silent triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import unit_of_work
from records.schemas import RecordCreate, SubjectCreate
from retention import holds, ingest, report
from tests.integration.test_purge import CANARY_EMAIL, DPO

NOW = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
CALL = "EC/2024/CNECT/443651"


def _record(
    s: Session, keyring: Keyring, n: int, *, category: str, outcome: str | None, collected: datetime
) -> None:
    subject = ingest.create_subject(
        s,
        keyring=keyring,
        body=SubjectCreate(email=f"r{n}-{CANARY_EMAIL}"),
        actor="test",
        now=collected,
    )
    ingest.ingest_record(
        s,
        keyring=keyring,
        body=RecordCreate(
            subject_id=subject.id,
            policy="DPR-EC-01488",
            category=category,
            subject_category="candidate",
            context=CALL if category != "survey_answers" else "survey-443651",
            outcome=outcome,
            collected_at=collected,
            payload={"n": n},
        ),
        actor="test",
        now=collected,
    )


def test_the_report_counts_what_the_dpo_must_see(engine: Engine) -> None:
    keyring = Keyring.generate(now=NOW)
    long_ago = NOW - timedelta(days=3 * 365)
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=long_ago
        )
    with unit_of_work(engine) as s:
        for n in range(3):
            _record(
                s, keyring, n, category="application", outcome="not_selected", collected=long_ago
            )
        # a questionnaire never closed: its trigger is silent past the two-year alarm
        _record(s, keyring, 10, category="survey_answers", outcome=None, collected=long_ago)
        _record(s, keyring, 11, category="survey_answers", outcome=None, collected=NOW)
    with unit_of_work(engine) as s:
        # the call closed a year ago minus five days: the not-selected data is due in 5 days
        ingest.record_event(
            s,
            type="call.closed",
            context=CALL,
            occurred_at=NOW - timedelta(days=360),
            actor="test",
            now=NOW,
        )
        holds.place_hold(
            s,
            scope=holds.Scope.parse({"policy": "DPR-EC-01488"}),
            reason="audit",
            case_reference=None,
            actor=DPO,
            now=NOW,
        )
    with Session(engine) as s:
        data = report.build(s, now=NOW)
        later = report.build(s, now=NOW + timedelta(days=10))
    totals = data["totals"]
    assert totals["records"] == 5
    assert totals["due_7_days"] == 3 and totals["due_30_days"] == 3
    assert totals["held"] == 5
    assert totals["untriggered"] == 2 and totals["untriggered_past_alarm"] == 1
    assert totals["overdue"] == 0
    # ten days on, the hold keeps what would otherwise be overdue
    assert later["totals"]["kept_by_holds"] == 3 and later["totals"]["overdue"] == 0
    rows = {r["rule_id"]: r for r in data["rows"]}
    assert rows["non-selected-candidates"]["due_7_days"] == 3
    assert rows["survey-specific-data"]["untriggered_past_alarm"] == 1
    assert CANARY_EMAIL not in report.to_csv(data) + report.to_html(data)
