"""A year of nightly purges over the DPR-EC-01488 call (EC/2024/CNECT/443651), day by day.

Candidates apply through EUSurvey before the call closes on 27 March 2024 at 12:00 CET. The
privacy statement keeps non-selected candidates' data "for 1 year after the closure of the
call"; invited and selected candidates pass to DPR-02054 (not in the registry: kept and
flagged). The nightly job (02:00 Europe/Brussels) runs every day from the closure until well
after the first anniversary, with the clock frozen at each fire time.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import unit_of_work
from records.models import PersonalRecord
from records.schemas import RecordCreate, SubjectCreate
from retention import holds, ingest, jobs, report
from retention.models import PurgeRun
from tests.integration.test_purge import CANARY_EMAIL, DPO, make_ctx

CALL = "EC/2024/CNECT/443651"
CLOSED = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)  # 12:00 CET
FIRST_NIGHT = datetime(2024, 3, 28, 1, 0, tzinfo=UTC)  # 02:00 CET
NIGHTS = 400  # until the end of April 2025 (one night has two 02:00 runs)


def _candidate(
    session: Session, keyring: Keyring, n: int, outcome: str, collected: datetime
) -> PersonalRecord:
    subject = ingest.create_subject(
        session,
        keyring=keyring,
        body=SubjectCreate(email=f"cand{n}-{CANARY_EMAIL}", name=f"Candidate {n}"),
        actor="test",
        now=collected,
    )
    record, _ = ingest.ingest_record(
        session,
        keyring=keyring,
        body=RecordCreate(
            subject_id=subject.id,
            policy="DPR-EC-01488",
            category="application",
            subject_category="candidate",
            context=CALL,
            outcome=outcome,
            collected_at=collected,
            payload={"cv": f"CV of candidate {n}", "email": f"cand{n}-{CANARY_EMAIL}"},
        ),
        actor="test",
        now=collected,
    )
    return record


@pytest.mark.slow
def test_a_year_of_nightly_purges_deletes_on_time_hands_over_and_respects_holds(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = Keyring.generate(now=CLOSED - timedelta(days=30))
    start = CLOSED - timedelta(days=20)
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="test", now=start
        )
    outcomes = ["not_selected"] * 16 + ["not_invited"] * 4 + ["invited"] * 4 + ["selected"] * 2
    with unit_of_work(engine) as s:
        made = [
            _candidate(s, keyring, n, outcome, start + timedelta(days=n % 19, hours=n))
            for n, outcome in enumerate(outcomes)
        ]
    with unit_of_work(engine) as s:
        ingest.record_event(
            s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="test", now=CLOSED
        )
    with Session(engine) as s:
        due_at = {r.id: r.due_at for r in s.execute(select(PersonalRecord)).scalars()}
    expiring = [r for r in made if r.outcome in ("not_selected", "not_invited")]
    moving = [r for r in made if r.outcome in ("invited", "selected")]
    assert all(due_at[r.id] is not None for r in made)
    one_year = {due_at[r.id] for r in expiring}
    assert len(one_year) == 1 and next(iter(one_year)) > CLOSED + timedelta(days=364)

    held = expiring[0]
    with unit_of_work(engine) as s:
        hold = holds.place_hold(
            s,
            scope=holds.Scope.parse({"subject_id": str(held.subject_id)}),
            reason="complaint to the EDPS pending",
            case_reference="EDPS 2025-0001",
            actor=DPO,
            now=CLOSED + timedelta(days=200),
        )

    spec = jobs.purge_job_spec(
        engine, ctx=make_ctx(tmp_path), cron="0 2 * * *", timezone="Europe/Brussels"
    )
    scheduler = jobs.JobScheduler(engine)
    scheduler.add(spec)
    gone_at: dict[uuid.UUID, datetime] = {}
    # Fire times computed with real datetimes (on 27 October 2024 02:00 happens twice).
    fires = [FIRST_NIGHT]
    while len(fires) < NIGHTS:
        following = jobs.next_fire_after(spec.trigger, fires[-1])
        assert following is not None
        fires.append(following)
    with freeze_time(FIRST_NIGHT) as frozen:
        for fire in fires:
            frozen.move_to(fire)
            assert scheduler.run_now(jobs.PURGE_JOB), fire
            with Session(engine) as s:
                present = set(s.execute(select(col(PersonalRecord.id))).scalars())
            for r in made:
                if r.id not in present and r.id not in gone_at:
                    gone_at[r.id] = fire

    # Every non-selected candidate but the held one is gone by its due instant, and no
    # earlier than the last night before it (the night whose next run would be too late).
    for r in expiring:
        if r.id == held.id:
            assert r.id not in gone_at
            continue
        due = due_at[r.id]
        assert due is not None and r.id in gone_at
        deleted = gone_at[r.id]
        assert deleted <= due, "overstay"
        following = jobs.next_fire_after(spec.trigger, deleted)
        assert following is not None and following > due, "deleted earlier than needed"

    with Session(engine) as s:
        for r in moving:
            kept = s.get(PersonalRecord, r.id)
            assert kept is not None and kept.policy == "DPR-02054"
            assert kept.status == "handed_over" and kept.payload is not None
        runs = list(s.execute(select(PurgeRun).order_by(col(PurgeRun.created_at))).scalars())
        assert len(runs) == NIGHTS
        assert all(r.status == "completed" and r.signature for r in runs)
        held_reports = [
            json.loads(r.certificate or "{}")["skipped_hold"]
            for r in runs
            if r.certificate and '"skipped_hold":[{' in r.certificate
        ]
        assert held_reports and all(
            rep == [{"record_id": str(held.id), "kept_by": [str(hold.id)]}] for rep in held_reports
        )
        handed = [rid for r in runs for rid in json.loads(r.certificate or "{}")["handed_over"]]
        assert sorted(handed) == sorted(str(r.id) for r in moving)
        summary = report.build(s, now=fires[-1])
    totals = summary["totals"]
    assert totals["overdue"] == 0
    assert totals["kept_by_holds"] == 1
    assert totals["handed_over_unresolved"] == len(moving)
    assert all(CANARY_EMAIL not in (r.certificate or "") for r in runs)
