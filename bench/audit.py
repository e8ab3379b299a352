"""Audit trail throughput: appends against plain INSERTs, verification against raw hashing.

    .venv/bin/python bench/audit.py                      # SQLite in a temporary directory
    .venv/bin/python bench/audit.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \
        --size 1000000                                  # an empty scratch database

Appends go through `audit_log.service.append` (canonical body, leaf hash, dense index under the
writer lock) in transactions of `--batch` entries; after each batch the same rows are inserted
with a plain multi-row INSERT into a table of the same shape, in a transaction of the same size.
Verification runs the verifier's core (`standalone_verify.TreeChecker`) over the stored bodies;
the baseline is one `hashlib.sha256` per body over the same bytes. Verification is timed twice:
the Merkle pass (leaf and node hashes, dense index) and the full pass that also re-encodes every
body as canonical JSON. Hashing is timed in CPU seconds, five paired runs, median ratio.
Prints `name=value` lines; the last is `ratio=`, the smaller of the two goal ratios
(append / plain INSERT, Merkle verification / raw hashing), each with a goal of 0.5.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import MetaData, insert, select
from sqlmodel import Session, col

from audit_log import checkpoints, service
from audit_log.models import AuditEntry
from audit_log.signing import NoteSigner
from audit_log.standalone_verify import TreeChecker
from audit_log.verify import verify_database
from lethe import migrate
from records.db import make_engine, new_session, unit_of_work

NOW = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)
ACTIONS = (
    "records.record.ingested",
    "records.event.added",
    "retention.record.purged",
    "dsr.request.step",
    "retention.hold.placed",
)


def _inputs(start: int, end: int) -> list[dict[str, Any]]:
    """What callers hand to `append` (made before the clock starts, like the plain rows).

    One `now` per transaction, as services pass their one clock reading to every entry.
    """
    now = NOW + timedelta(seconds=start)
    return [
        {
            "action": ACTIONS[i % len(ACTIONS)],
            "actor": "job:purge" if i % 3 else f"key:{uuid.UUID(int=i % 97)}",
            "now": now,
            "subject_id": uuid.UUID(int=(i * 7919) % 10**9 + 1),
            "target": f"record:{uuid.UUID(int=i + 1)}",
            "details": {"policy": "DPR-EC-01488", "rule": "applications", "batch": i // 500},
        }
        for i in range(start, end)
    ]


def _append_all(session: Session, inputs: list[dict[str, Any]]) -> None:
    append = service.append
    for kwargs in inputs:
        append(session, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="an empty scratch database (default: SQLite)")
    parser.add_argument("--size", type=int, default=100_000, help="entries to append")
    parser.add_argument("--batch", type=int, default=1000, help="entries per transaction")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lethe-bench-audit-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    plain = AuditEntry.__table__.to_metadata(MetaData(), name="bench_audit_plain")  # type: ignore[attr-defined]
    plain.create(engine)
    signer = NoteSigner.load_or_create(tmp / "audit.key", "bench.lethe/audit")
    n, batch = args.size, args.batch

    append_s = plain_s = 0.0
    columns = [AuditEntry.__table__.c[c.name] for c in plain.columns]  # type: ignore[attr-defined]
    for start in range(0, n, batch):
        end = min(start + batch, n)
        inputs = _inputs(start, end)
        t0 = time.perf_counter()
        with unit_of_work(engine) as s:
            _append_all(s, inputs)
        append_s += time.perf_counter() - t0
        with new_session(engine) as s:
            rows = [
                dict(r._mapping)
                for r in s.execute(
                    select(*columns)
                    .where(col(AuditEntry.idx) >= start)
                    .order_by(col(AuditEntry.idx))
                )
            ]
        t0 = time.perf_counter()
        with unit_of_work(engine) as s:
            s.execute(insert(plain), rows)
        plain_s += time.perf_counter() - t0

    t0 = time.perf_counter()
    with unit_of_work(engine) as s:
        checkpoints.make_checkpoint(s, signer=signer, now=NOW)
    full_checkpoint_s = time.perf_counter() - t0
    with unit_of_work(engine) as s:
        _append_all(s, _inputs(n, n + batch))
    t0 = time.perf_counter()
    with unit_of_work(engine) as s:
        checkpoints.make_checkpoint(s, signer=signer, now=NOW)
    incremental_checkpoint_s = time.perf_counter() - t0

    with new_session(engine) as s:
        pairs = [
            (int(i), str(b))
            for i, b in s.execute(
                select(col(AuditEntry.idx), col(AuditEntry.body)).order_by(col(AuditEntry.idx))
            )
        ]
    data = [b.encode() for _, b in pairs]

    def cpu_seconds(fn: Callable[[], object]) -> float:
        # CPU time of this process: hashing is CPU-bound, and the machine may be shared.
        t = time.process_time()
        fn()
        return time.process_time() - t

    sha = hashlib.sha256

    def raw_pass() -> None:
        [sha(b).digest() for b in data]

    def merkle_pass() -> None:
        checker = TreeChecker((len(pairs),), canonical=False)
        checker.feed(pairs, last=True)
        assert not checker.problems

    def full_pass() -> None:
        checker = TreeChecker((len(pairs),), canonical=True)
        checker.feed(pairs, last=True)
        assert not checker.problems

    # Paired runs (baseline, then verifier, back to back); the medians are reported.
    raws, merkles, ratios = [], [], []
    for _ in range(5):
        raws.append(cpu_seconds(raw_pass))
        merkles.append(cpu_seconds(merkle_pass))
        ratios.append(raws[-1] / merkles[-1])
    raw_s, merkle_s = statistics.median(raws), statistics.median(merkles)
    verify_ratio = statistics.median(ratios)
    full_s = cpu_seconds(full_pass)
    t0 = time.perf_counter()
    with new_session(engine) as s:
        report = verify_database(
            s, verifier_key=signer.verifier_key(), origin=signer.name, witness_dir=None
        )
    db_verify_s = time.perf_counter() - t0
    assert not report.problems, report.problems
    engine.dispose()

    shutil.rmtree(tmp, ignore_errors=True)  # the SQLite file and the bench signing key
    leaves = len(pairs)
    append_ratio = plain_s / append_s
    print(f"backend={engine.dialect.name}")
    print(f"size={n}")
    print(f"batch={batch}")
    print(f"append_per_s={n / append_s:.0f}")
    print(f"plain_insert_per_s={n / plain_s:.0f}")
    print(f"checkpoint_full_s={full_checkpoint_s:.3f}")
    print(f"checkpoint_incremental_s={incremental_checkpoint_s:.3f}")
    print(f"raw_hash_per_s={leaves / raw_s:.0f}")
    print(f"verify_merkle_leaves_per_s={leaves / merkle_s:.0f}")
    print(f"verify_full_leaves_per_s={leaves / full_s:.0f}")
    print(f"verify_full_ratio={raw_s / full_s:.2f}")
    print(f"verify_database_leaves_per_s={leaves / db_verify_s:.0f}")
    print(f"append_ratio={append_ratio:.2f}")
    print(f"verify_ratio={verify_ratio:.2f}")
    print(f"ratio={min(append_ratio, verify_ratio):.2f}")


if __name__ == "__main__":
    main()
