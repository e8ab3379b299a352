"""Disposition-run benchmarks, each beside a baseline measured in the same run.

(a) throughput: SIZE records, half of them due; the purge (selection by keyset, hold and
    rule-version re-check, delete, items, key destruction, one audit entry per batch, signed
    certificate, audit checkpoint) against a batched plain SQL `DELETE` of the same due rows with
    no audit. Goal: purge throughput / baseline throughput >= 0.5.
(b) scaling: time to purge 10,000 due records among 10,000 versus among SIZE. Goal <= 1.5.
(c) peak memory (max RSS) of the purge process of (a). Goal <= 300 MB.

Every timed run happens in a fresh child process (so its peak memory is its own), on its own
copy of the same seeded database (file copy on SQLite, `CREATE DATABASE … TEMPLATE` on
PostgreSQL).

    .venv/bin/python bench/purge.py 100000                       # SQLite in a temporary dir
    .venv/bin/python bench/purge.py 1000000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres   # admin database

Prints `name=value` lines; the last is `ratio=` (goal (a)).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, delete, insert, select, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
SMALL = 10_000
BATCH = 500
REPEATS = 3


# --- databases ---------------------------------------------------------------------------------


class Databases:
    """Creates, copies and drops scratch databases next to `base_url`."""

    def __init__(self, base_url: str | None, workdir: Path) -> None:
        self.base_url = base_url
        self.workdir = workdir
        self.created: list[str] = []

    @property
    def postgres(self) -> bool:
        return bool(self.base_url) and self.base_url.startswith("postgresql")  # type: ignore[union-attr]

    def url(self, name: str) -> str:
        if not self.postgres:
            return f"sqlite:///{self.workdir / (name + '.db')}"
        assert self.base_url
        return make_url(self.base_url).set(database=name).render_as_string(hide_password=False)

    def _admin(self) -> Engine:
        assert self.base_url
        return create_engine(self.base_url, isolation_level="AUTOCOMMIT")

    def create(self, name: str) -> str:
        if self.postgres:
            admin = self._admin()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            self.created.append(name)
        return self.url(name)

    def copy(self, source: str, name: str) -> str:
        if self.postgres:
            admin = self._admin()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
            admin.dispose()
            self.created.append(name)
        else:
            shutil.copyfile(self.workdir / f"{source}.db", self.workdir / f"{name}.db")
        return self.url(name)

    def drop_all(self) -> None:
        if not self.postgres:
            return
        admin = self._admin()
        with admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, *, total: int, due: int, rng: random.Random) -> None:
    """`total` records of 10 each per subject, `due` of them (chosen at random) already due."""
    from lethe import migrate
    from records.db import make_engine
    from records.models import DataKey, PersonalRecord, Subject

    migrate.upgrade(url)
    engine = make_engine(url)
    due_flags = [True] * due + [False] * (total - due)
    rng.shuffle(due_flags)
    subjects = max(1, total // 10)
    subject_ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(subjects)]
    chunk = 10_000
    with engine.begin() as conn:
        for start in range(0, subjects, chunk):
            ids = subject_ids[start : start + chunk]
            conn.execute(
                insert(Subject.__table__),  # type: ignore[attr-defined]
                [
                    {"id": s, "identity": os.urandom(64), "created_at": NOW, "updated_at": NOW}
                    for s in ids
                ],
            )
            conn.execute(
                insert(DataKey.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "id": uuid.uuid4(),
                        "subject_id": s,
                        "wrapped_key": os.urandom(60),
                        "kek_epoch": 1,
                        "created_at": NOW,
                    }
                    for s in ids
                ],
            )
    for start in range(0, total, chunk):
        rows = []
        for i in range(start, min(total, start + chunk)):
            is_due = due_flags[i]
            offset = timedelta(minutes=rng.randrange(1, 500_000))
            rows.append(
                {
                    "id": uuid.UUID(int=rng.getrandbits(128)),
                    "subject_id": subject_ids[i % subjects],
                    "policy": "DPR-EC-01488",
                    "policy_version": None,
                    "category": "application",
                    "subject_category": "candidate",
                    "context": "EC/2024/CNECT/443651",
                    "outcome": "not_selected",
                    "collected_at": NOW - timedelta(days=400),
                    "payload": os.urandom(200),
                    "payload_hash": "0" * 64,
                    "due_at": NOW - offset if is_due else NOW + offset,
                    "rule_id": "non-selected-candidates",
                    "rule_version": 1,
                    "action": "delete",
                    "status": "active",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(PersonalRecord.__table__), rows)  # type: ignore[attr-defined]
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


# --- the timed work (run in a child process) ---------------------------------------------------


def child_purge(url: str, key_dir: str) -> dict[str, float]:
    from audit_log.jobs import checkpoint_job
    from audit_log.signing import NoteSigner
    from records.db import make_engine
    from records.http import Actor
    from retention import purge

    engine = make_engine(url)
    signer = NoteSigner.load_or_create(Path(key_dir) / "audit.key", "lethe.bench/audit")
    ctx = purge.PurgeContext(
        config=purge.PurgeConfig(batch_size=BATCH, anomaly_floor=10**12),
        signer=signer,
        checkpoint=lambda eng, now: checkpoint_job(eng, signer, now),
    )
    started = time.perf_counter()
    run = purge.purge(
        engine,
        dry_run=False,
        trigger="cli",
        actor=Actor(id="bench"),
        clock=lambda: NOW,
        ctx=ctx,
    )
    elapsed = time.perf_counter() - started
    from records.db import new_session

    with new_session(engine) as session:
        acted = purge.counts(session, run.id)["deleted"]
    assert run.status == "completed", run.status
    return {"seconds": elapsed, "acted": float(acted)}


def child_baseline(url: str) -> dict[str, float]:
    from records.db import make_engine
    from records.models import PersonalRecord

    engine = make_engine(url)
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    deleted = 0
    started = time.perf_counter()
    last = None
    while True:
        with engine.begin() as conn:
            stmt = select(table.c.due_at, table.c.id).where(table.c.due_at <= NOW)
            if last is not None:
                stmt = stmt.where(
                    (table.c.due_at > last[0])
                    | ((table.c.due_at == last[0]) & (table.c.id > last[1]))
                )
            rows = conn.execute(stmt.order_by(table.c.due_at, table.c.id).limit(BATCH)).all()
            if not rows:
                break
            conn.execute(delete(table).where(table.c.id.in_([r[1] for r in rows])))
            deleted += len(rows)
            last = (rows[-1][0], rows[-1][1])
    return {"seconds": time.perf_counter() - started, "acted": float(deleted)}


def run_child(kind: str, url: str, key_dir: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--database-url",
            url,
            "--key-dir",
            str(key_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LETHE_LOG_LEVEL": "WARNING"},
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"child {kind} failed")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- main --------------------------------------------------------------------------------------


@contextmanager
def scratch(base_url: str | None) -> Iterator[Databases]:
    with tempfile.TemporaryDirectory(prefix="lethe-bench-") as tmp:
        dbs = Databases(base_url, Path(tmp))
        try:
            yield dbs
        finally:
            dbs.drop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", nargs="?", type=int, default=100_000, help="records (a) and (b)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLite: omitted (temporary files). PostgreSQL: an admin URL; scratch databases "
        "lethe_bench_* are created next to it and dropped at the end.",
    )
    parser.add_argument("--child", choices=["purge", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--key-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        from lethe.logging import configure_logging

        configure_logging("WARNING", "json")
        if args.child == "purge":
            result = child_purge(args.database_url, args.key_dir)
        else:
            result = child_baseline(args.database_url)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
        print(json.dumps({**result, "peak_mb": peak}))
        return

    size = args.size
    rng = random.Random(20240327)
    base = args.database_url
    if base is not None and base.startswith("sqlite"):
        base = None
    with scratch(base) as dbs, tempfile.TemporaryDirectory() as keys:
        key_dir = Path(keys)
        print(f"backend={'postgresql' if dbs.postgres else 'sqlite'}")
        print(f"size={size}")
        # (a) throughput, half due
        seeded = dbs.create("lethe_bench_a")
        t0 = time.perf_counter()
        seed(seeded, total=size, due=size // 2, rng=rng)
        print(f"seed_seconds={time.perf_counter() - t0:.1f}")
        base_run = run_child("baseline", dbs.copy("lethe_bench_a", "lethe_bench_a_base"), key_dir)
        purge_run = run_child("purge", dbs.copy("lethe_bench_a", "lethe_bench_a_purge"), key_dir)
        assert base_run["acted"] == purge_run["acted"] == size // 2, (base_run, purge_run)
        base_tput = base_run["acted"] / base_run["seconds"]
        purge_tput = purge_run["acted"] / purge_run["seconds"]
        print(f"a_due={size // 2}")
        print(f"a_baseline_seconds={base_run['seconds']:.2f}")
        print(f"a_purge_seconds={purge_run['seconds']:.2f}")
        print(f"a_baseline_records_per_second={base_tput:.0f}")
        print(f"a_purge_records_per_second={purge_tput:.0f}")
        throughput_ratio = purge_tput / base_tput

        # (b) 10,000 due among 10,000 versus among SIZE; the median of three runs each, on
        # fresh copies, beside the plain DELETE's own ratio (what the storage engine adds).
        dbs.create("lethe_bench_b_small")
        seed(dbs.url("lethe_bench_b_small"), total=SMALL, due=SMALL, rng=rng)
        dbs.create("lethe_bench_b_large")
        seed(dbs.url("lethe_bench_b_large"), total=max(size, SMALL), due=SMALL, rng=rng)
        timings: dict[str, float] = {}
        for which in ("small", "large"):
            for kind in ("purge", "baseline"):
                runs = sorted(
                    run_child(
                        kind,
                        dbs.copy(f"lethe_bench_b_{which}", f"lethe_bench_b_{which}_{kind}_{i}"),
                        key_dir,
                    )["seconds"]
                    for i in range(REPEATS)
                )
                timings[f"{kind}_{which}"] = runs[len(runs) // 2]
        print(f"b_baseline_small_seconds={timings['baseline_small']:.2f}")
        print(f"b_baseline_large_seconds={timings['baseline_large']:.2f}")
        print(
            f"b_baseline_scaling_ratio={timings['baseline_large'] / timings['baseline_small']:.2f}"
        )
        print(f"b_small_seconds={timings['purge_small']:.2f}")
        print(f"b_large_seconds={timings['purge_large']:.2f}")
        print(f"b_scaling_ratio={timings['purge_large'] / timings['purge_small']:.2f}")

        # (c) peak memory of the purge process of (a)
        print(f"c_baseline_peak_mb={base_run['peak_mb']:.0f}")
        print(f"c_purge_peak_mb={purge_run['peak_mb']:.0f}")
        print(f"c_memory_ratio={purge_run['peak_mb'] / 300:.2f}")
        print(f"ratio={throughput_ratio:.2f}")


if __name__ == "__main__":
    main()
