"""`lethe worker`: the scheduler alone, without the API."""

from __future__ import annotations

import signal
import threading

import structlog

from lethe.logging import configure_logging
from lethe.settings import Settings

log = structlog.get_logger("lethe.worker")


def run_worker(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry

    from lethe.wiring import build_wiring
    from records.db import make_engine

    configure_logging(settings.log_level, settings.log_format)
    settings.ensure_data_dir()
    engine = make_engine(
        settings.effective_database_url, busy_timeout=settings.database_busy_timeout_seconds
    )
    wiring = build_wiring(settings, engine, CollectorRegistry(), scheduler=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    wiring.start()
    log.info("worker.started")
    stop.wait()
    wiring.stop()
    engine.dispose()
    log.info("worker.stopped")
