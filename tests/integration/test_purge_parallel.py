"""Several purge workers on one PostgreSQL database share one run and act on each record once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from records.db import unit_of_work, utc_now
from retention import purge
from retention.models import PurgeRun
from tests.integration.test_purge import DPO, make_ctx, make_keyring, make_record, make_subject


@pytest.mark.postgres_only
def test_two_workers_at_once_delete_each_record_once(engine: Engine, tmp_path: Path) -> None:
    keyring = make_keyring()
    now = utc_now()
    with unit_of_work(engine) as s:
        subjects = [make_subject(s, keyring, n=i) for i in range(8)]
        doomed = [
            make_record(s, keyring, subjects[i % 8], due_at=now - timedelta(minutes=i))
            for i in range(60)
        ]
    ctx = make_ctx(tmp_path, batch_size=3)
    batches_by: Counter[str] = Counter()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def slow_batch(_run: PurgeRun, _n: int) -> None:
        batches_by[threading.current_thread().name] += 1
        time.sleep(0.005)  # let the other worker take the next rows

    ctx.on_batch = slow_batch

    def worker() -> None:
        try:
            start.wait()
            purge.purge(engine, dry_run=False, trigger="cli", actor=DPO, clock=utc_now, ctx=ctx)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with Session(engine) as s:
        runs = list(s.execute(select(PurgeRun)).scalars())
        destroyed, _keys = purge.destroyed_ids(s, runs[0].id)
        bodies = s.execute(
            select(col(AuditEntry.body)).where(col(AuditEntry.action) == "retention.batch.purged")
        ).scalars()
        audited = [rid for b in bodies for rid in json.loads(b)["details"].get("deleted", [])]
        left = s.execute(select(col(AuditEntry.idx))).scalars().all()
    assert len(runs) == 1 and runs[0].status == "completed" and runs[0].certificate_seq == 0
    assert destroyed == sorted(str(r.id) for r in doomed)
    assert len(audited) == len(set(audited)) == len(doomed)
    assert sorted(left) == list(range(len(left)))  # the audit index stayed dense
    assert len(batches_by) == 2, "both workers took batches of the one run"
    assert sum(batches_by.values()) >= len(doomed) // 3
