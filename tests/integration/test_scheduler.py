"""The job scheduler: explicit job ids, one process per job, extra jobs, the purge horizon."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from dsr.jobs import DEADLINE_ALERT_JOB
from lethe.app import create_app
from lethe.settings import Settings
from records.db import unit_of_work
from retention import jobs
from retention.jobs import JobScheduler, JobSpec, Lease
from tests.integration.test_purge import (
    make_ctx,
    make_keyring,
    make_record,
    make_subject,
    remaining,
)

NOW = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)


def test_only_one_holder_gets_a_lease_at_a_time(engine: Engine) -> None:
    first = Lease(engine, "job.x", holder="a")
    second = Lease(engine, "job.x", holder="b")
    assert first.acquire(now=NOW, ttl=timedelta(hours=1))
    assert not second.acquire(now=NOW, ttl=timedelta(hours=1))
    first.release(now=NOW)
    assert second.acquire(now=NOW + timedelta(seconds=1), ttl=timedelta(hours=1))
    second.release(now=NOW)


def test_a_second_process_firing_the_same_slot_does_not_run_the_job_again(engine: Engine) -> None:
    runs: list[str] = []
    a = JobScheduler(engine, holder="a")
    b = JobScheduler(engine, holder="b")

    def recorder(name: str) -> Callable[[datetime], None]:
        return lambda _now: runs.append(name)

    for sched, name in ((a, "a"), (b, "b")):
        sched.add(
            JobSpec(
                id="job.nightly",
                trigger=jobs.cron_trigger("0 2 * * *", "Europe/Brussels"),
                run=recorder(name),
                min_gap=timedelta(hours=1),
            )
        )
    assert a.run_now("job.nightly", now=NOW)
    assert not b.run_now("job.nightly", now=NOW + timedelta(minutes=2))
    assert b.run_now("job.nightly", now=NOW + timedelta(days=1))
    assert runs == ["a", "b"]


def test_an_expired_lease_of_a_dead_holder_is_taken_over(engine: Engine) -> None:
    dead = Lease(engine, "job.y", holder="dead")
    assert dead.acquire(now=NOW, ttl=timedelta(minutes=5))
    dead._unlock()  # the process died: its connection (and advisory lock) went with it
    other = Lease(engine, "job.y", holder="other")
    assert not other.acquire(now=NOW + timedelta(minutes=1), ttl=timedelta(minutes=5))
    assert other.acquire(now=NOW + timedelta(minutes=6), ttl=timedelta(minutes=5))
    other.release(now=NOW)


def test_a_failing_job_releases_its_lease(engine: Engine) -> None:
    sched = JobScheduler(engine)

    def boom(_now: datetime) -> None:
        raise RuntimeError("boom")

    sched.add(JobSpec(id="job.boom", trigger=jobs.interval_trigger(minutes=5), run=boom))
    with pytest.raises(RuntimeError):
        sched.run_now("job.boom", now=NOW)
    assert Lease(engine, "job.boom").acquire(now=NOW, ttl=timedelta(minutes=1))


def test_the_scheduled_purge_acts_on_what_falls_due_before_the_next_run(
    engine: Engine, tmp_path: Path
) -> None:
    keyring = make_keyring()
    fire = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)  # 02:00 in Brussels (CEST)
    with unit_of_work(engine) as s:
        subject = make_subject(s, keyring)
        before_next = make_record(s, keyring, subject, due_at=fire + timedelta(hours=23))
        after_next = make_record(s, keyring, subject, due_at=fire + timedelta(hours=25))
    spec = jobs.purge_job_spec(
        engine, ctx=make_ctx(tmp_path), cron="0 2 * * *", timezone="Europe/Brussels"
    )
    sched = JobScheduler(engine)
    sched.add(spec)
    assert sched.run_now(jobs.PURGE_JOB, now=fire)
    assert before_next.id not in remaining(engine)
    assert after_next.id in remaining(engine)


def test_serve_starts_the_scheduler_with_explicit_job_ids_and_extra_jobs(
    settings: Settings,
) -> None:
    on = settings.model_copy(update={"scheduler": "on"})
    app = create_app(on)
    sched: JobScheduler = app.state.scheduler
    sched.add(
        JobSpec(
            id="extra.job",
            trigger=jobs.interval_trigger(minutes=60),
            run=lambda _now: None,
        )
    )
    assert {jobs.PURGE_JOB, jobs.KEY_EPOCH_JOB, jobs.CHECKPOINT_JOB, "extra.job"} <= set(sched.jobs)
    with TestClient(app):
        next_purge = sched.next_run_time(jobs.PURGE_JOB)
        assert next_purge is not None
        assert (
            next_purge.astimezone(jobs.cron_trigger("0 2 * * *", "Europe/Brussels").timezone).hour
            == 2
        )
        assert sched.next_run_time("extra.job") is not None
        assert sched.next_run_time(DEADLINE_ALERT_JOB) is not None
    assert sched.next_run_time(jobs.PURGE_JOB) is None  # stopped with the app
    off = create_app(settings)
    with TestClient(off):
        assert off.state.scheduler.next_run_time(jobs.PURGE_JOB) is None
