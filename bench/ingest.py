"""Records per second through the import path, beside a plain INSERT baseline of the same rows.

Both sides read the same NDJSON file (the DPR-EC-01488 demo data: candidates with CVs,
motivation letters, accounts…) in batches of `--batch-size` lines, one transaction per batch:

- baseline: `json.loads` each line and `executemany` INSERT the subjects and records as they
  are, unencrypted, with no validation, no due date, no audit; a subject's row carries the same
  columns as lethe's (a 64-hex digest of its e-mail and external id, under the same unique
  indexes), so both sides pay for the same index upkeep;
- lethe: the real import (`retention.ingest.import_batch`): validation, subjects found by the
  exact keyed digest of their e-mail or created with a fresh data key, payloads sealed with
  AES-256-GCM, keyed fingerprints for idempotency, due dates from the policy evaluation, audit
  entries.

    .venv/bin/python bench/ingest.py                        # SQLite in a temporary directory
    .venv/bin/python bench/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench \
        --records 200000                                    # an empty scratch database

Prints `name=value` lines; the last is `ratio=` (lethe records/s ÷ baseline records/s; the goal
is ≥ 0.5 at 200,000 records) and, before it, the resident memory at 10% and at the end of the
import (flat: the file is streamed and the caches are bounded).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from lethe import migrate
from lethe.logging import configure_logging
from policies import service as policies
from policies.loader import registry_dir
from records.crypto import Keyring
from records.db import make_engine, unit_of_work
from records.models import DataKey, PersonalRecord, Subject
from retention import demo, ingest

NOW = datetime(2024, 4, 2, 9, tzinfo=UTC)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def write_file(path: Path, count: int) -> None:
    candidates = count // 4 + 10
    with path.open("w") as out:
        for line in itertools.islice(demo.candidate_lines(candidates), count):
            out.write(json.dumps(line) + "\n")


def _chunks(path: Path, size: int) -> Iterator[list[str]]:
    with path.open() as fh:
        while True:
            lines = list(itertools.islice(fh, size))
            if not lines:
                return
            yield lines


def baseline(engine: Engine, path: Path, batch_size: int) -> int:
    subjects: dict[str, uuid.UUID] = {}
    count = 0
    for lines in _chunks(path, batch_size):
        subject_rows: list[dict[str, Any]] = []
        record_rows: list[dict[str, Any]] = []
        for text in lines:
            raw = json.loads(text)
            email = raw["subject"]["email"]
            subject_id = subjects.get(email)
            if subject_id is None:
                subject_id = subjects[email] = uuid.uuid4()
                external_id = raw["subject"].get("external_id")
                subject_rows.append(
                    {
                        "id": subject_id,
                        "identity": json.dumps(raw["subject"]).encode(),
                        "email_index": None,
                        "external_id_index": None,
                        "email_key": hashlib.sha256(email.encode()).hexdigest(),
                        "external_id_key": (
                            hashlib.sha256(external_id.encode()).hexdigest()
                            if external_id
                            else None
                        ),
                        "created_at": NOW,
                        "updated_at": NOW,
                        "erased_at": None,
                    }
                )
            record_rows.append(
                {
                    "id": uuid.uuid4(),
                    "subject_id": subject_id,
                    "policy": raw["policy"],
                    "policy_version": 1,
                    "category": raw["category"],
                    "subject_category": raw.get("subject_category"),
                    "context": raw.get("context"),
                    "outcome": raw.get("outcome"),
                    "source": raw.get("source"),
                    "collected_at": datetime.fromisoformat(raw["collected_at"]),
                    "payload": json.dumps(raw["payload"]).encode(),
                    "payload_hash": "",
                    "due_at": None,
                    "rule_id": None,
                    "rule_version": None,
                    "action": None,
                    "handover_to": None,
                    "status": "active",
                    "restricted_at": None,
                    "restriction_ground": None,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
        with unit_of_work(engine) as s:
            conn = s.connection()
            if subject_rows:
                conn.execute(insert(Subject.__table__), subject_rows)  # type: ignore[attr-defined]
            conn.execute(insert(PersonalRecord.__table__), record_rows)  # type: ignore[attr-defined]
        count += len(record_rows)
    return count


def lethe_import(
    engine: Engine, keyring: Keyring, path: Path, batch_size: int, memory: list[float]
) -> tuple[int, int]:
    imported = failed = 0
    state: ingest.ImportState | None = None
    with path.open() as fh:
        lines = ingest.read_lines(fh, fmt="ndjson")
        for batch in ingest.batched(lines, batch_size):
            with unit_of_work(engine) as s:
                if state is None:
                    state = ingest.ImportState(s, keyring=keyring, now=NOW)
                state.rebind(s)
                result = ingest.import_batch(s, state=state, lines=batch, actor="bench", now=NOW)
            imported += result.imported
            failed += len(result.failures)
            memory.append(rss_mb())
    return imported, failed


def clear(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        for table in (PersonalRecord, DataKey, Subject):
            s.execute(delete(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty scratch database (default: SQLite)")
    parser.add_argument("--records", type=int, default=200_000, help="records to import")
    parser.add_argument("size", nargs="?", type=int, help="same as --records")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    count = args.size or args.records
    configure_logging("WARNING", "json")

    with tempfile.TemporaryDirectory(prefix="lethe-bench-") as tmp:
        work = Path(tmp)
        url = args.database_url or f"sqlite:///{work / 'bench.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        keyring = Keyring.load_or_create(work / "kek.json")
        with unit_of_work(engine) as s:
            policies.load_policy_file(
                s, path_or_text=registry_dir() / "DPR-EC-01488.yaml", actor="bench", now=NOW
            )
        clear(engine)
        data = work / "records.ndjson"
        write_file(data, count)
        print(f"backend={engine.dialect.name}")
        print(f"records={count}")
        print(f"file_mb={data.stat().st_size / 1e6:.1f}")

        start = time.perf_counter()
        base_count = baseline(engine, data, args.batch_size)
        base_seconds = time.perf_counter() - start
        clear(engine)

        memory: list[float] = []
        start = time.perf_counter()
        imported, failed = lethe_import(engine, keyring, data, args.batch_size, memory)
        lethe_seconds = time.perf_counter() - start
        engine.dispose()

        base_rate = base_count / base_seconds
        rate = imported / lethe_seconds
        print(f"baseline_seconds={base_seconds:.2f}")
        print(f"baseline_records_per_second={base_rate:.0f}")
        print(f"lethe_seconds={lethe_seconds:.2f}")
        print(f"lethe_records_per_second={rate:.0f}")
        print(f"lethe_failed_lines={failed}")
        print(f"rss_mb_at_10pct={memory[len(memory) // 10]:.0f}")
        print(f"rss_mb_at_end={memory[-1]:.0f}")
        print(f"ratio={rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
