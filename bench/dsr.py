"""Access-package latency for a subject with 10, 1,000 and 10,000 records.

Beside it, in the same run and on the same rows, the time of a plain `SELECT` of the subject's
records (no decryption, no JSON): the ratio says what the package costs over reading the rows.

    .venv/bin/python bench/dsr.py                          # SQLite in a temporary directory
    .venv/bin/python bench/dsr.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \
        --records 10000                                   # an empty scratch database

Prints `name=value` lines; the last is `ratio=` (package median / SELECT median, largest size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.engine import Engine

from dsr import package, rights
from dsr import service as svc
from dsr.models import RequestType
from dsr.notifier import OutboxNotifier
from lethe import migrate
from lethe.logging import configure_logging
from policies import service as policies
from policies.loader import registry_dir
from records import service as records
from records.crypto import Keyring
from records.db import make_engine, new_session, unit_of_work
from records.http import Actor, Role
from records.models import PersonalRecord

NOW = datetime(2025, 5, 6, 9, tzinfo=UTC)
STAFF = Actor(id="bench", role=Role.controller)


def _subject_with(engine: Engine, keyring: Keyring, n: int) -> tuple[uuid.UUID, str]:
    email = f"bench-{n}-{uuid.uuid4().hex[:8]}@example.org"
    with unit_of_work(engine) as s:
        subject = records.create_subject(s, keyring=keyring, email=email, now=NOW)
        cache = records.KeyCache(keyring)
        key_id, plain = cache.get(s, subject.id)
        batch = []
        for i in range(n):
            batch.append(
                records.build_record(
                    record_id=uuid.uuid4(),
                    subject_id=subject.id,
                    key_id=key_id,
                    data_key=plain,
                    policy="DPR-EC-01488",
                    policy_version=1,
                    category="application",
                    collected_at=NOW - timedelta(days=40),
                    payload={"cv": f"curriculum vitae {i} " + "x" * 400, "languages": ["en", "fr"]},
                    payload_hash=uuid.uuid4().hex,
                    due=records.Due(
                        due_at=NOW + timedelta(days=300),
                        rule_id="r",
                        rule_version=1,
                        action="delete",
                    ),
                    now=NOW,
                    subject_category="candidate",
                    context="EC/2024/CNECT/443651",
                    outcome="not_selected",
                )
            )
            if len(batch) == 1000:
                s.add_all(batch)
                s.flush()
                batch = []
        s.add_all(batch)
        sid = subject.id
    return sid, email


def _timed(fn: Callable[[], None], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database-url", default=None, help="empty scratch database (default: SQLite)"
    )
    parser.add_argument("--records", type=int, default=10_000, help="largest subject size")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    configure_logging("WARNING", "json")

    tmp = Path(tempfile.mkdtemp(prefix="lethe-bench-dsr-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    keyring = Keyring.generate(now=NOW)
    config = svc.DsrConfig(keyring=keyring, notifier=OutboxNotifier())
    with unit_of_work(engine) as s:
        policies.load_policy_file(
            s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="bench", now=NOW
        )
    sizes = sorted({n for n in (10, 1_000, 10_000) if n <= args.records} | {args.records})
    ratio = 0.0
    for n in sizes:
        subject_id, email = _subject_with(engine, keyring, n)
        with unit_of_work(engine) as s:
            req = svc.file_request(
                s,
                config=config,
                type=RequestType.access,
                email=email,
                details=None,
                changes=None,
                actor=STAFF,
                client_address=None,
                identity_verified=True,
                now=NOW,
            )
            rights.process(s, config=config, request_id=req.id, actor=STAFF, now=NOW)
            rid = req.id
        with new_session(engine) as s:
            plan = package.plan(
                s, config=config, request=svc.get_request(s, rid), format="json", now=NOW
            )
        assert plan.count == n

        def build(plan: package.Plan = plan) -> None:
            size = sum(
                len(chunk) for chunk in package.render(engine, config=config, plan=plan, now=NOW)
            )
            assert size > 0

        def select_rows(subject_id: uuid.UUID = subject_id, n: int = n) -> None:
            table = PersonalRecord.__table__  # type: ignore[attr-defined]
            with engine.connect() as conn:
                rows = conn.execute(
                    select(table).where(table.c.subject_id == subject_id)
                ).fetchall()
            assert len(rows) == n

        build()
        select_rows()  # warm both
        repeats = args.repeats if n <= 1_000 else max(3, args.repeats // 2)
        pkg = _timed(build, repeats)
        sel = _timed(select_rows, repeats)
        print(f"package_{n}_median_ms={statistics.median(pkg) * 1000:.2f}")
        print(f"package_{n}_p95_ms={_p95(pkg) * 1000:.2f}")
        tracemalloc.start()
        build()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # streamed: the peak stays near one batch, whatever the subject's record count
        print(f"package_{n}_peak_mib={peak / 2**20:.1f}")
        print(f"select_{n}_median_ms={statistics.median(sel) * 1000:.2f}")
        ratio = statistics.median(pkg) / statistics.median(sel)
        print(f"ratio_{n}={ratio:.2f}")
    engine.dispose()
    print(f"ratio={ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
