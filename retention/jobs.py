"""The job scheduler (DESIGN §5.7): APScheduler 3.x, explicit job ids, one process per job.

Every job runs under a lease in `job_lease`: a conditional UPDATE that only one process can win
(the row is free or its lease expired, and the job has not started within its minimum gap, so a
second process firing the same cron a moment later does not run it again). On PostgreSQL the
winner also holds a session advisory lock for the whole run, so even a run outliving its lease
is never doubled.

Packages above `retention` (dsr's deadline alerts) cannot be imported here; `lethe.wiring`
registers their jobs with `JobScheduler.add`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, insert, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from records import service as records
from records.crypto import Keyring
from records.db import unit_of_work, utc_now
from records.http import Actor
from retention import purge
from retention.models import JobLease
from retention.purge import PurgeContext

log = structlog.get_logger(__name__)

PURGE_JOB = "retention.purge"
CHECKPOINT_JOB = "audit.checkpoint"
KEY_EPOCH_JOB = "records.key_epoch"
DEADLINE_ALERTS_JOB = "dsr.deadline_alerts"


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _advisory_key(job_id: str) -> int:
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big", signed=True)


class Lease:
    """One process's claim on a job; use `acquire` then `release` (or `with lease.held(...)`)."""

    def __init__(self, engine: Engine, job_id: str, *, holder: str | None = None) -> None:
        self.engine = engine
        self.job_id = job_id
        self.holder = holder or default_holder()
        self._pg_conn: Connection | None = None

    @property
    def _postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def acquire(self, *, now: datetime, ttl: timedelta, min_gap: timedelta = timedelta(0)) -> bool:
        if self._postgres:
            conn = self.engine.connect()
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(self.job_id)}
            ).scalar_one()
            conn.commit()
            if not got:
                conn.close()
                return False
            self._pg_conn = conn
        try:
            won = self._claim(now=now, ttl=ttl, min_gap=min_gap)
        except BaseException:
            self._unlock()
            raise
        if not won:
            self._unlock()
        return won

    def _claim(self, *, now: datetime, ttl: timedelta, min_gap: timedelta) -> bool:
        table = JobLease.__table__  # type: ignore[attr-defined]
        with unit_of_work(self.engine) as session:
            if session.get(JobLease, self.job_id) is None:
                try:
                    with session.begin_nested():
                        session.execute(insert(table).values(job_id=self.job_id))
                except IntegrityError:
                    pass
            result = session.execute(
                update(table)
                .where(
                    table.c.job_id == self.job_id,
                    (table.c.holder.is_(None)) | (table.c.expires_at < now),
                    (table.c.last_started_at.is_(None))
                    | (table.c.last_started_at <= now - min_gap),
                )
                .values(holder=self.holder, expires_at=now + ttl, last_started_at=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, *, now: datetime) -> None:
        table = JobLease.__table__  # type: ignore[attr-defined]
        try:
            with unit_of_work(self.engine) as session:
                session.execute(
                    update(table)
                    .where(table.c.job_id == self.job_id, table.c.holder == self.holder)
                    .values(holder=None, expires_at=None, last_finished_at=now)
                )
        finally:
            self._unlock()

    def _unlock(self) -> None:
        conn, self._pg_conn = self._pg_conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _advisory_key(self.job_id)})
            conn.commit()
        finally:
            conn.close()


@dataclass
class JobSpec:
    """A scheduled job: `run(now)` does the work; the scheduler takes the lease around it."""

    id: str
    trigger: BaseTrigger
    run: Callable[[datetime], Any]
    # Another process firing the same slot within this gap does not run the job again.
    min_gap: timedelta = timedelta(0)
    lease_ttl: timedelta = timedelta(hours=1)


@dataclass
class JobScheduler:
    engine: Engine
    holder: str = field(default_factory=default_holder)
    clock: Callable[[], datetime] = utc_now
    jobs: dict[str, JobSpec] = field(default_factory=dict)
    _scheduler: BackgroundScheduler | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spec: JobSpec) -> None:
        if spec.id in self.jobs:
            raise ValueError(f"job {spec.id} is already registered")
        self.jobs[spec.id] = spec
        if self._scheduler is not None:
            self._schedule(spec)

    def run_now(self, job_id: str, *, now: datetime | None = None) -> bool:
        """Run a job once under its lease; False when another process holds or just ran it."""
        spec = self.jobs[job_id]
        started = now or self.clock()
        lease = Lease(self.engine, job_id, holder=self.holder)
        if not lease.acquire(now=started, ttl=spec.lease_ttl, min_gap=spec.min_gap):
            log.info("scheduler.job.skipped", job_id=job_id, reason="lease")
            return False
        log.info("scheduler.job.started", job_id=job_id)
        try:
            spec.run(started)
        except Exception as exc:
            log.error("scheduler.job.failed", job_id=job_id, error_type=type(exc).__name__)
            raise
        finally:
            lease.release(now=now or self.clock())
        log.info("scheduler.job.finished", job_id=job_id)
        return True

    def _execute(self, job_id: str) -> None:
        # Logged in run_now; one failed run must not stop the scheduler thread.
        with contextlib.suppress(Exception):
            self.run_now(job_id)

    def _schedule(self, spec: JobSpec) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            self._execute,
            trigger=spec.trigger,
            id=spec.id,
            args=[spec.id],
            max_instances=1,
            coalesce=True,
            misfire_grace_time=600,
            replace_existing=True,
        )

    def start(self) -> None:
        with self._lock:
            if self._scheduler is not None:
                return
            self._scheduler = BackgroundScheduler(timezone=UTC)
            for spec in self.jobs.values():
                self._schedule(spec)
            self._scheduler.start()
        log.info("scheduler.started", jobs=sorted(self.jobs))

    def stop(self) -> None:
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
            log.info("scheduler.stopped")

    def next_run_time(self, job_id: str) -> datetime | None:
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(job_id)
        return None if job is None else job.next_run_time


def cron_trigger(cron: str, timezone: str) -> CronTrigger:
    return CronTrigger.from_crontab(cron, timezone=timezone)


def interval_trigger(*, minutes: float = 0, days: float = 0) -> IntervalTrigger:
    return IntervalTrigger(minutes=minutes, days=days, timezone=UTC)


def next_fire_after(trigger: BaseTrigger, moment: datetime) -> datetime | None:
    """The first fire time strictly after `moment`."""
    fire: datetime | None = trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))
    return None if fire is None else fire.astimezone(UTC)


def rotate_key_epochs(
    engine: Engine,
    *,
    keyring: Keyring,
    now: datetime,
    rotation_days: int,
    backup_window_days: int,
    actor: str = f"job:{KEY_EPOCH_JOB}",
    batch_size: int = 1000,
) -> tuple[int | None, list[int]]:
    """Start a new KEK epoch when the current one is `rotation_days` old, rewrap live data keys
    under it, and destroy retired epochs older than the backup window (DESIGN §4).

    Destroying an epoch is what makes crypto-shredded data unreadable in backups too. Returns
    (the new epoch or None, the destroyed epochs). Resumable: rewrapping picks up where it was.
    """
    from retention import ingest

    keyring.reload()
    current = next(e for e in keyring.epochs() if e.epoch == keyring.current_epoch)
    new_epoch: int | None = None
    if current.created_at + timedelta(days=rotation_days) <= now:
        new_epoch = keyring.rotate(now=now)
    rewrapped = 0
    after: uuid.UUID | None = None
    while True:
        with unit_of_work(engine) as session:
            result = records.rewrap_batch(
                session, keyring=keyring, now=now, after=after, batch_size=batch_size
            )
        rewrapped += result.rewrapped
        if result.rewrapped == 0 or result.last_id is None:
            break
        after = result.last_id
    with unit_of_work(engine) as session:
        if new_epoch is not None:
            ingest.audit_kek_rotated(
                session, epoch=new_epoch, rewrapped=rewrapped, actor=actor, now=now
            )
        destroyed = ingest.destroy_expired_epochs(
            session,
            keyring=keyring,
            backup_window=timedelta(days=backup_window_days),
            actor=actor,
            now=now,
        )
    return new_epoch, destroyed


def purge_job_spec(engine: Engine, *, ctx: PurgeContext, cron: str, timezone: str) -> JobSpec:
    """The nightly purge. Its horizon is the next scheduled run: what falls due before then is
    acted on tonight, so nothing outlives its maximum (DESIGN §5, "no overstay")."""
    trigger = cron_trigger(cron, timezone)

    def run(now: datetime) -> None:
        horizon = next_fire_after(trigger, now) or now
        purge.purge(
            engine,
            dry_run=False,
            trigger="scheduled",
            actor=Actor(id=f"job:{PURGE_JOB}"),
            # The job's own instant: the scheduler's fire time (or a test's frozen clock).
            clock=lambda: now,
            ctx=ctx,
            horizon=horizon,
        )

    # Another process firing the same night a little later must not run it again.
    return JobSpec(
        id=PURGE_JOB,
        trigger=trigger,
        run=run,
        min_gap=timedelta(hours=1),
        lease_ttl=timedelta(hours=6),
    )
