"""Crash safety (DESIGN §5.4): a purge killed with SIGKILL anywhere and rerun ends exactly right.

The child process kills itself with SIGKILL when it is about to send its N-th SQL statement,
so kill points fall inside batch transactions, between them, during finalisation and while
the certificate is written. After the kills a clean rerun must leave exactly the records that
should remain; every destroyed record has its audit entry, no audit entry names a record that
still exists, nothing is recorded as destroyed twice, and the audit log verifies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log.models import AuditEntry
from audit_log.signing import NoteSigner
from lethe.settings import Settings
from records.db import unit_of_work, utc_now
from retention import certificate, holds
from retention.models import PurgeRun
from tests.integration.test_purge import DPO, make_keyring, make_record, make_subject, remaining

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "lethe.test/audit"

CHILD = r"""
import os, signal, sys
from sqlalchemy import event
from audit_log.jobs import checkpoint_job
from audit_log.signing import NoteSigner
from records.db import make_engine, utc_now
from records.http import Actor
from retention import purge

url, key_file, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = make_engine(url)
signer = NoteSigner.load_or_create(key_file, "lethe.test/audit")
count = 0

@event.listens_for(engine, "before_cursor_execute")
def _maybe_die(*_args):
    global count
    count += 1
    if kill_at and count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

ctx = purge.PurgeContext(
    config=purge.PurgeConfig(batch_size=4),
    signer=signer,
    checkpoint=lambda eng, now: checkpoint_job(eng, signer, now),
)
purge.purge(engine, dry_run=False, trigger="cli", actor=Actor(id="cli"), clock=utc_now, ctx=ctx)
print("statements", count)
"""


def run_child(url: str, key_file: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", CHILD, url, str(key_file), str(kill_at)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_a_purge_killed_at_random_points_and_rerun_ends_exactly_right(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    keyring = make_keyring()
    now = utc_now()
    with unit_of_work(engine) as s:
        subjects = [make_subject(s, keyring, n=i) for i in range(6)]
        due = [
            make_record(s, keyring, subjects[i % 6], due_at=now - timedelta(hours=i))
            for i in range(24)
        ]
        not_due = [
            make_record(s, keyring, subjects[i % 6], due_at=now + timedelta(days=30))
            for i in range(3)
        ]
        hold = holds.place_hold(
            s,
            scope=holds.Scope.parse({"record_id": str(due[5].id)}),
            reason="appeal",
            case_reference=None,
            actor=DPO,
            now=now,
        )
    assert hold.id
    should_remain = {r.id for r in not_due} | {due[5].id}
    key_file = tmp_path / "audit.key"
    url = settings.effective_database_url

    # A run here takes about a hundred statements: the kill points fall in batches (selection,
    # deletes, items, audit), in key destruction, in finalisation and in the checkpoint.
    kills = [7, 23, 41, 64, 90]
    killed = 0
    for kill_at in kills:
        result = run_child(url, key_file, kill_at)
        if result.returncode == -signal.SIGKILL:
            killed += 1
        else:
            assert result.returncode == 0, result.stderr[-2000:]
    assert killed >= 3, "the kill points should fall inside the purge"
    final = run_child(url, key_file, 0)
    assert final.returncode == 0, final.stderr[-2000:]

    assert remaining(engine) == should_remain
    with Session(engine) as s:
        bodies = [
            json.loads(b)
            for b in s.execute(
                select(col(AuditEntry.body)).where(
                    col(AuditEntry.action) == "retention.batch.purged"
                )
            ).scalars()
        ]
        audited = [rid for b in bodies for rid in b["details"].get("deleted", [])]
        assert len(audited) == len(set(audited)), "a record was destroyed twice"
        assert {uuid.UUID(r) for r in audited} == {r.id for r in due} - {due[5].id}
        assert certificate.chain_problems(s) == []
        runs = list(s.execute(select(PurgeRun)).scalars())
        assert all(r.status in ("completed", "partial") for r in runs)
        assert all(r.certificate and r.signature for r in runs)

        from audit_log.verify import verify_database

        signer = NoteSigner.load_or_create(key_file, ORIGIN)
        report = verify_database(
            s, verifier_key=signer.verifier_key(), origin=ORIGIN, witness_dir=None
        )
    assert report.problems == []
    assert report.entries > 0
