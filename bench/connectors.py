"""Connector purge benchmark: due rows erased at the source beside a raw baseline, same run.

A survey tool's schema (respondents, answers referring to them) is seeded twice, identically,
on the source server: SIZE answers of SIZE/100 respondents, every answer due for deletion.
(a) the Lethe purge of the SIZE external records indexed from the first copy (selection by
    keyset, hold and rule-version re-check, the source DELETE through the connector, the index
    rows, items, key destruction, one audit entry per batch, signed certificate);
(b) a batched raw `DELETE FROM answer WHERE id IN (…)` of the same rows in the second copy,
    one transaction per batch of `--batch` rows, nothing else. The purge starts with batches
    of `--batch` records and, once a batch met only external records, grows them to
    `external_batch_size` (`external_batch=`); the source still receives transactions of at
    most `connectors.source.CHUNK` (500) rows, the same as the baseline's by default
    (`source_transaction_rows=`).
Goal: purge throughput / baseline throughput >= 0.5 (`ratio=`, the last line).
(c) for scale, what a connector without governance would do on a third copy: per batch of
    `--batch` the same keyset selection of due records in a Lethe database, the source DELETE
    and the index rows' DELETE, and nothing else (no holds, items, audit, keys, certificate):
    `ratio_vs_index_baseline=`.
(d) the floor of any design that keeps an index of the rows: on that Lethe database, the due
    records' ids read by keyset and their index rows deleted, `external_batch` per
    transaction, rolled back; no source, no per-row Python (`index_floor_seconds=`).
    `ratio_bound=` (baseline / floor) is what `ratio=` could reach if the source erase and all
    the governance cost nothing.

    .venv/bin/python bench/connectors.py 100000                   # PostgreSQL source
    .venv/bin/python bench/connectors.py 100000 --source mariadb
    .venv/bin/python bench/connectors.py 100000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres  # Lethe on PG too

The sync that indexes the rows is timed and printed too (`sync_seconds=`), not in the ratio.

How a batch runs (100k rows, Lethe on SQLite, batches of 20000 external records, 2026-12-03 on
a 2-core machine whose figures vary by a third from run to run): the source erase runs in a
worker thread while Lethe deletes the index rows it expects to delete (in a savepoint, kept only
when every source confirmed), so the batch pays the longer of the two, about 1.3 s in all; the
keyset read of the due rows costs 0.6 to 1 s, the rest (plan, holds, keys, batch row, audit,
commits, certificate) about 1 s. Purge 3.4 to 4.9 s against a baseline of 1.0 to 1.8 s:
`ratio=` 0.30 to 0.38 (Lethe on PostgreSQL: 0.25); `ratio_bound=` 0.67. Below the goal of 0.5:
the index DELETE and the due-row read alone take about 1.5 times the whole raw baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import (  # noqa: E402
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url  # noqa: E402

CALL = "EC/2024/CNECT/443651"
# The source stores naive UTC datetimes (the mapping says `timezone: UTC`).
SUBMITTED = datetime(2024, 3, 10, 9, 0, tzinfo=UTC).replace(tzinfo=None)
CLOSED = datetime(2024, 3, 27, 11, 0, tzinfo=UTC)
PURGE_AT = CLOSED + timedelta(days=367)
BATCH = 500
ADMIN = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
MAPPING = """
format: lethe.connector/1
name: bench
url: {url}
policy: DPR-EC-01488
subject_category: candidate
batch_size: 5000
tables:
  - name: answer
    key: [id]
    category: application
    join:
      - {{table: respondent, match: {{respondent_id: id}}}}
    subject: {{email: respondent.email}}
    collected_at: saved_at
    outcome: respondent.outcome
    context: respondent.call_ref
    erasure: {{action: delete}}
"""


def schema() -> tuple[MetaData, Table, Table]:
    md = MetaData()
    respondent = Table(
        "respondent",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(320)),
        Column("call_ref", String(100)),
        Column("outcome", String(40)),
    )
    answer = Table(
        "answer",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("respondent_id", Integer, ForeignKey("respondent.id"), nullable=False),
        Column("answer_text", Text()),
        Column("saved_at", DateTime()),
    )
    return md, respondent, answer


class Sources:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.admin = create_engine(ADMIN[kind], isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self, size: int) -> str:
        name = f"lethe_bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        self.names.append(name)
        url = make_url(ADMIN[self.kind]).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url)
        md, respondent, answer = schema()
        md.create_all(engine)
        people = max(1, size // 100)
        with engine.begin() as conn:
            conn.execute(
                respondent.insert(),
                [
                    {
                        "id": n,
                        "email": f"bench{n}@example.org",
                        "call_ref": CALL,
                        "outcome": "not_selected",
                    }
                    for n in range(people)
                ],
            )
            for start in range(0, size, 10_000):
                conn.execute(
                    answer.insert(),
                    [
                        {
                            "id": i,
                            "respondent_id": i % people,
                            "answer_text": "an answer of some length " * 4,
                            "saved_at": SUBMITTED,
                        }
                        for i in range(start, min(size, start + 10_000))
                    ],
                )
        engine.dispose()
        return url

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                force = " WITH (FORCE)" if self.kind == "postgresql" else ""
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        self.admin.dispose()


def count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT COUNT(*) FROM answer")).scalar_one())
    engine.dispose()
    return n


def baseline(url: str, size: int, batch: int) -> float:
    """A batched raw DELETE of every answer, `batch` ids per transaction, in key order."""
    engine: Engine = create_engine(url)
    _, _, answer = schema()
    started = time.perf_counter()
    for start in range(0, size, batch):
        ids = list(range(start, min(size, start + batch)))
        with engine.begin() as conn:
            conn.execute(delete(answer).where(answer.c.id.in_(ids)))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def due_page(cursor: tuple[datetime, uuid.UUID] | None, batch: int, *columns: str) -> Any:
    """The next `batch` due records after `cursor`, by the purge's keyset `(due_at, id)`."""
    from sqlalchemy import literal, tuple_

    from records.models import PersonalRecord

    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    stmt = select(t.c.id, t.c.due_at, *(t.c[c] for c in columns)).where(
        t.c.due_at.is_not(None), t.c.due_at <= PURGE_AT
    )
    if cursor is not None:
        after = tuple_(literal(cursor[0], t.c.due_at.type), literal(cursor[1], t.c.id.type))
        stmt = stmt.where(tuple_(t.c.due_at, t.c.id) > after)
    return stmt.order_by(t.c.due_at, t.c.id).limit(batch)


def index_baseline(lethe_url: str, source_url: str, batch: int) -> float:
    """(c): keyset over the due records, the source DELETE, the index rows' DELETE; no more."""
    from records.db import make_engine
    from records.models import PersonalRecord

    lethe = make_engine(lethe_url)
    source = create_engine(source_url)
    _, _, answer = schema()
    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    cursor: tuple[datetime, uuid.UUID] | None = None
    started = time.perf_counter()
    while True:
        with lethe.begin() as conn:
            rows = conn.execute(due_page(cursor, batch, "external_key")).all()
            if not rows:
                break
            keys = [json.loads(r.external_key)[0] for r in rows]
            with source.begin() as src:
                src.execute(delete(answer).where(answer.c.id.in_(keys)))
            conn.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
            cursor = (rows[-1].due_at, rows[-1].id)
    elapsed = time.perf_counter() - started
    lethe.dispose()
    source.dispose()
    return elapsed


def index_floor(lethe_url: str, batch: int) -> float:
    """(d): the part of a purge no design that keeps an index can skip, on Lethe's database:
    read the due records' ids by keyset and DELETE their index rows, `batch` per transaction,
    each transaction rolled back (so the rows stay for (c), and commits are not counted). No
    source, no per-row work in Python: `baseline / this` bounds what `ratio=` could reach."""
    from sqlmodel import Session

    from records.db import make_engine
    from records.models import PersonalRecord
    from records.service import one_of

    lethe = make_engine(lethe_url)
    t = PersonalRecord.__table__  # type: ignore[attr-defined]
    cursor: tuple[datetime, uuid.UUID] | None = None
    started = time.perf_counter()
    while True:
        with Session(lethe) as session, session.begin():
            rows = session.execute(due_page(cursor, batch)).all()
            if not rows:
                break
            session.execute(delete(t).where(one_of(session, t.c.id, [r.id for r in rows])))
            cursor = (rows[-1].due_at, rows[-1].id)
            session.rollback()
    elapsed = time.perf_counter() - started
    lethe.dispose()
    return elapsed


def lethe_database(
    url: str | None, workdir: Path, label: str = "lethe"
) -> tuple[str, tuple[Engine, str] | None]:
    if url is None:
        return f"sqlite:///{workdir / (label + '.db')}", None
    name = f"lethe_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    target = make_url(url).set(database=name).render_as_string(hide_password=False)
    return target, (admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", type=int, nargs="?", default=100_000)
    parser.add_argument("--source", choices=sorted(ADMIN), default="postgresql")
    parser.add_argument("--database-url", help="Lethe on PostgreSQL (admin URL); default SQLite")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help="Rows per transaction, purge and baseline alike"
    )
    args = parser.parse_args()

    from audit_log.signing import NoteSigner
    from connectors.mapping import parse_mapping
    from connectors.registry import Registry, Secrets
    from connectors.source import CHUNK
    from lethe import migrate
    from policies import service as policies
    from policies.loader import registry_dir
    from records.crypto import Keyring
    from records.db import make_engine, unit_of_work
    from records.http import Actor, Role
    from retention import external, ingest, purge

    def prepare(url: str, registry: Registry, keyring: Keyring, *, timed: bool) -> Engine:
        """A migrated Lethe database with the source's rows indexed and the call closed."""
        migrate.upgrade(url)
        engine = make_engine(url)
        with unit_of_work(engine) as s:
            policies.load_policy_file(
                s,
                path_or_text=registry_dir() / "DPR-EC-01488.yaml",
                actor="bench",
                now=CLOSED - timedelta(days=30),
            )
        started = time.perf_counter()
        synced = external.sync(
            engine,
            registry=registry,
            name="bench",
            keyring=keyring,
            actor="bench",
            now=CLOSED - timedelta(days=1),
        )
        if timed:
            print(f"sync_seconds={time.perf_counter() - started:.2f}")
        assert synced.total("new") == args.size, synced
        with unit_of_work(engine) as s:
            ingest.record_event(
                s, type="call.closed", context=CALL, occurred_at=CLOSED, actor="bench", now=CLOSED
            )
        return engine

    sources = Sources(args.source)
    workdir = Path(tempfile.mkdtemp(prefix="lethe-bench-"))
    lethe_url, cleanup = lethe_database(args.database_url, workdir)
    index_url, index_cleanup = lethe_database(args.database_url, workdir, "index")
    try:
        governed = sources.create(args.size)
        raw = sources.create(args.size)
        indexed = sources.create(args.size)
        keyring = Keyring.generate(now=CLOSED - timedelta(days=60))
        registry = Registry(workdir / "none", Secrets({}, {}))
        registry.add(parse_mapping(MAPPING.format(url=governed)))
        engine = prepare(lethe_url, registry, keyring, timed=True)
        ctx = purge.PurgeContext(
            config=purge.PurgeConfig(batch_size=args.batch, anomaly_floor=10**9),
            signer=NoteSigner.load_or_create(workdir / "audit.key", "lethe.bench/audit"),
            external=external.ExternalActions(registry),
        )
        started = time.perf_counter()
        run = purge.purge(
            engine,
            dry_run=False,
            trigger="manual",
            actor=Actor(id="key:bench", role=Role.dpo),
            clock=lambda: PURGE_AT,
            ctx=ctx,
        )
        purge_seconds = time.perf_counter() - started
        assert run.status == "completed", run.status
        assert count(governed) == 0, "the purge left rows at the source"
        base_seconds = baseline(raw, args.size, args.batch)
        assert count(raw) == 0
        registry.dispose()
        engine.dispose()
        index_registry = Registry(workdir / "none", Secrets({}, {}))
        index_registry.add(parse_mapping(MAPPING.format(url=indexed)))
        prepare(index_url, index_registry, keyring, timed=False).dispose()
        index_registry.dispose()
        external_batch = max(args.batch, ctx.config.external_batch_size)
        floor_seconds = index_floor(index_url, external_batch)
        index_seconds = index_baseline(index_url, indexed, args.batch)
        assert count(indexed) == 0
        print(f"source={args.source}")
        print(f"lethe={'postgresql' if args.database_url else 'sqlite'}")
        print(f"rows={args.size}")
        print(f"batch={args.batch}")
        print(f"external_batch={external_batch}")
        print(f"source_transaction_rows={min(args.batch, CHUNK)}")
        print(f"purge_seconds={purge_seconds:.2f}")
        print(f"purge_rows_per_second={args.size / purge_seconds:.0f}")
        print(f"baseline_seconds={base_seconds:.2f}")
        print(f"baseline_rows_per_second={args.size / base_seconds:.0f}")
        print(f"index_baseline_seconds={index_seconds:.2f}")
        print(f"ratio_vs_index_baseline={index_seconds / purge_seconds:.2f}")
        print(f"index_floor_seconds={floor_seconds:.2f}")
        print(f"ratio_bound={base_seconds / floor_seconds:.2f}")
        print(f"ratio={base_seconds / purge_seconds:.2f}")
    finally:
        sources.drop_all()
        for made in (cleanup, index_cleanup):
            if made is not None:
                admin, name = made
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
