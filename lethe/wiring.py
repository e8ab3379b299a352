"""Turns settings into the objects the domain packages need (they never read `Settings`).

Domain packages below `lethe` take plain values: a key file path, a cron string, an engine.
This module builds those objects once per app or CLI invocation, puts them on `app.state`
for routes, and starts/stops background work (the in-process scheduler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from audit_log.signing import NoteSigner
from lethe.settings import Settings
from records.crypto import Keyring


@dataclass
class Wiring:
    settings: Settings
    engine: Engine
    registry: CollectorRegistry
    # name -> object placed on app.state (keyring, signer, notifier, registry paths…)
    state: dict[str, Any] = field(default_factory=dict)
    on_start: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    metric_refreshers: list[Callable[[], None]] = field(default_factory=list)

    def install(self, app: FastAPI) -> None:
        for name, value in self.state.items():
            setattr(app.state, name, value)

    def start(self) -> None:
        for hook in self.on_start:
            hook()

    def stop(self) -> None:
        for hook in reversed(self.on_stop):
            hook()

    def refresh_metrics(self) -> None:
        for refresh in self.metric_refreshers:
            refresh()


def build_wiring(
    settings: Settings, engine: Engine, registry: CollectorRegistry, *, scheduler: bool = False
) -> Wiring:
    """Build the domain objects. `scheduler`: also run the scheduled jobs in this process."""
    wiring = Wiring(settings=settings, engine=engine, registry=registry)
    # Each domain adds what it needs below, in layer order (records first).
    wiring.state["keyring"] = Keyring.load_or_create(settings.effective_kek_file)
    wiring.state["audit_signer"] = NoteSigner.load_or_create(
        settings.effective_audit_key_file, settings.audit_log_origin
    )
    wiring.state["checkpoint_public"] = settings.checkpoint_public
    _wire_audit(wiring)
    # The scheduler first, so that every domain wired after it can add its jobs
    # (`wiring.state["scheduler"].add(JobSpec(...))`); it only starts when `scheduler` is True.
    _wire_retention(wiring, scheduler=scheduler)
    _wire_connectors(wiring)
    _wire_dsr(wiring)
    return wiring


def _wire_audit(wiring: Wiring) -> None:
    """The checkpointer of `lethe serve` and `lethe worker` (whether or not the scheduler runs
    here: an API replica signs what its own requests wrote). CLI commands never start it."""
    from audit_log.jobs import Checkpointer

    checkpointer = Checkpointer(
        wiring.engine,
        wiring.state["audit_signer"],
        freshness=wiring.settings.checkpoint_freshness_seconds,
    )
    wiring.state["checkpointer"] = checkpointer
    if wiring.settings.checkpoint_freshness_seconds > 0:
        wiring.on_start.append(checkpointer.start)
        wiring.on_stop.append(checkpointer.stop)


def _wire_retention(wiring: Wiring, *, scheduler: bool) -> None:
    """Disposition runs (purge context, certificate signer) and the job scheduler."""
    from audit_log.jobs import checkpoint_job
    from records.crypto import Keyring as _Keyring
    from retention import jobs
    from retention.purge import PurgeConfig, PurgeContext

    s = wiring.settings
    keyring: _Keyring = wiring.state["keyring"]

    def epoch_started() -> Any:
        current = keyring.current_epoch
        return next((e.created_at for e in keyring.epochs() if e.epoch == current), None)

    ctx = PurgeContext(
        config=PurgeConfig(
            batch_size=s.purge_batch_size,
            anomaly_factor=s.purge_anomaly_factor,
            anomaly_floor=s.purge_anomaly_floor,
            kek_rotation_days=s.kek_rotation_days,
            kek_backup_window_days=s.kek_backup_window_days,
        ),
        signer=wiring.state["audit_signer"],
        keyring_epoch_created_at=epoch_started,
        # A signed audit checkpoint after every run (DESIGN §7).
        checkpoint=lambda engine, now: checkpoint_job(engine, wiring.state["audit_signer"], now),
    )
    wiring.state["purge_context"] = ctx
    sched = jobs.JobScheduler(wiring.engine)
    sched.add(
        jobs.JobSpec(
            id=jobs.CHECKPOINT_JOB,
            trigger=jobs.interval_trigger(minutes=s.checkpoint_interval_minutes),
            run=lambda now: checkpoint_job(wiring.engine, wiring.state["audit_signer"], now),
            min_gap=timedelta(minutes=s.checkpoint_interval_minutes / 2),
        )
    )
    sched.add(
        jobs.purge_job_spec(wiring.engine, ctx=ctx, cron=s.purge_cron, timezone=s.purge_timezone)
    )
    sched.add(
        jobs.JobSpec(
            id=jobs.KEY_EPOCH_JOB,
            trigger=jobs.interval_trigger(days=1),
            run=lambda now: jobs.rotate_key_epochs(
                wiring.engine,
                keyring=keyring,
                now=now,
                rotation_days=s.kek_rotation_days,
                backup_window_days=s.kek_backup_window_days,
            ),
            min_gap=timedelta(hours=12),
        )
    )
    wiring.state["scheduler"] = sched
    if scheduler:
        wiring.on_start.append(sched.start)
        wiring.on_stop.append(sched.stop)


def _wire_dsr(wiring: Wiring) -> None:
    """Data-subject requests: the notifier, the institution calendar, deadline gauges."""
    from prometheus_client import Gauge

    from dsr.client_address import parse_networks
    from dsr.deadlines import InstitutionCalendar, load_holidays
    from dsr.notifier import build_notifier
    from dsr.service import DsrConfig, deadline_counts
    from records.db import new_session, utc_now

    s = wiring.settings
    notifier = build_notifier(
        smtp_host=s.smtp_host,
        smtp_port=s.smtp_port,
        smtp_from=s.smtp_from,
        smtp_username=s.smtp_username,
        smtp_password=s.smtp_password,
        smtp_tls=s.smtp_tls,
    )
    wiring.state["notifier"] = notifier
    wiring.state["dsr"] = DsrConfig(
        keyring=wiring.state["keyring"],
        notifier=notifier,
        calendar=InstitutionCalendar(
            tz=s.calendar_timezone, holidays=load_holidays(s.holidays, s.holidays_file)
        ),
        otp_ttl=timedelta(minutes=s.otp_ttl_minutes),
        otp_max_attempts=s.otp_max_attempts,
        intake_rate_per_hour=s.intake_rate_per_hour,
        package_token_ttl=timedelta(minutes=s.package_token_minutes),
        public_base_url=s.public_base_url,
        signer=wiring.state["audit_signer"],
        trusted_proxies=parse_networks(s.trusted_proxies),
        proxy_header=s.proxy_header,
        external=wiring.state.get("external_actions"),
    )
    overdue = Gauge(
        "lethe_dsr_requests_overdue",
        "Open data-subject requests past their due date.",
        registry=wiring.registry,
    )
    due_soon = Gauge(
        "lethe_dsr_requests_due_soon",
        "Open data-subject requests due within 7 days.",
        registry=wiring.registry,
    )

    def refresh() -> None:
        with new_session(wiring.engine) as session:
            late, soon = deadline_counts(session, now=utc_now())
        overdue.set(late)
        due_soon.set(soon)

    wiring.metric_refreshers.append(refresh)

    from dsr import notifier as outbox
    from dsr.jobs import DEADLINE_ALERT_JOB, OUTBOX_SWEEP_JOB, deadline_alerts, outbox_sweep
    from retention import jobs

    # A subject the nightly purge empties is forgotten by the outbox in the same transaction
    # (retention cannot import dsr); the sweep also drops codes and links once expired.
    wiring.state["purge_context"].on_subjects_erased = lambda session, ids, now: (
        outbox.forget_subjects(session, ids, now=now)
    )
    wiring.state["scheduler"].add(
        jobs.JobSpec(
            id=OUTBOX_SWEEP_JOB,
            trigger=jobs.interval_trigger(minutes=5),
            run=lambda now: outbox_sweep(wiring.engine, now),
            min_gap=timedelta(minutes=2),
        )
    )

    wiring.state["scheduler"].add(
        jobs.JobSpec(
            id=DEADLINE_ALERT_JOB,
            trigger=jobs.cron_trigger("0 8 * * 1-5", s.calendar_timezone),
            run=lambda now: deadline_alerts(
                wiring.engine, notifier, now, alert_to=s.requests_alert_to
            ),
            min_gap=timedelta(hours=12),
        )
    )


def _wire_connectors(wiring: Wiring) -> None:
    """Source systems' databases (connectors/): the purge and the rights act there."""
    from connectors.registry import PACKAGED, Registry, Secrets
    from retention.external import ExternalActions

    s = wiring.settings
    registry = Registry(s.connectors_dir or PACKAGED, Secrets.load(s.connector_secrets_file))
    actions = ExternalActions(registry)
    wiring.state["external_actions"] = actions
    wiring.state["purge_context"].external = actions
    wiring.on_stop.append(registry.dispose)
    if s.connectors_sync_cron:
        from retention import jobs
        from retention.external import SYNC_JOB, sync_all

        wiring.state["scheduler"].add(
            jobs.JobSpec(
                id=SYNC_JOB,
                trigger=jobs.cron_trigger(s.connectors_sync_cron, s.purge_timezone),
                run=lambda now: sync_all(
                    wiring.engine,
                    registry=registry,
                    keyring=wiring.state["keyring"],
                    actor="scheduler",
                    now=now,
                ),
                min_gap=timedelta(minutes=30),
            )
        )
