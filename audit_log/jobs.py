"""Scheduled work of the audit trail (the retention scheduler calls these)."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from audit_log.checkpoints import make_checkpoint
from audit_log.signing import NoteSigner
from records.db import unit_of_work

log = structlog.get_logger(__name__)


def checkpoint_job(engine: Engine, signer: NoteSigner, now: datetime) -> int:
    """Sign a checkpoint of the log in its own transaction if it grew; returns the tree size."""
    with unit_of_work(engine) as session:
        checkpoint = make_checkpoint(session, signer=signer, now=now)
        size = checkpoint.size
    log.info("audit.checkpoint", size=size)
    return size
