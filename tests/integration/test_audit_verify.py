"""`lethe audit verify` and the standalone verifier against an administrator's attacks.

Each attack runs with the database guards dropped, as the database administrator could, and
both verifiers must refuse the trail with a precise message; the witness directory keeps the
checkpoint last verified and is only updated on success.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine
from typer.testing import CliRunner

import audit_log.standalone_verify as standalone
from audit_log import checkpoints, service
from audit_log.canonical import dumps
from audit_log.checkpoints import checkpoint_body
from audit_log.models import AuditCheckpoint
from audit_log.signing import NoteSigner
from lethe.cli import app as cli_app
from lethe.settings import Settings
from records.db import UTCDateTime, unit_of_work

NOW = datetime(2026, 3, 27, 11, 0, tzinfo=UTC)
CHECKPOINT_SIZES = (100, 300, 520)
GUARDED = ("audit_entry", "audit_subtree", "audit_checkpoint")
CANARY = "Canary Person-7f3a"


@dataclass
class Trail:
    engine: Engine
    signer: NoteSigner
    runner: CliRunner
    witness: Path
    tmp: Path


def _append_some(engine: Engine, signer: NoteSigner, start: int, end: int, tag: str) -> None:
    with unit_of_work(engine) as s:
        for i in range(start, end):
            service.append(
                s,
                action="records.record.ingested" if i % 3 else "retention.batch.purged",
                actor="job:purge" if i % 2 else f"key:{uuid.UUID(int=i)}",
                now=NOW + timedelta(seconds=i),
                subject_id=uuid.UUID(int=i + 1),
                target=f"record:{uuid.UUID(int=10_000 + i)}",
                details={"n": i, "tag": tag},
            )
        checkpoints.make_checkpoint(s, signer=signer, now=NOW + timedelta(seconds=end))


@pytest.fixture
def trail(settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Trail:
    monkeypatch.setenv("LETHE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("LETHE_DATA_DIR", str(settings.data_dir))
    signer = NoteSigner.load_or_create(settings.effective_audit_key_file, settings.audit_log_origin)
    previous = 0
    for size in CHECKPOINT_SIZES:
        _append_some(engine, signer, previous, size, "real")
        previous = size
    t = Trail(
        engine, signer, CliRunner(), settings.data_dir.parent / "witness", settings.data_dir.parent
    )
    first = t.runner.invoke(cli_app, ["audit", "verify", "--witness-dir", str(t.witness)])
    assert first.exit_code == 0, first.output
    assert "OK: 520 entries, 3 checkpoints" in first.output
    return t


def _verdicts(t: Trail) -> tuple[int, str, int, str]:
    """(exit code, output) of `lethe audit verify`, then of the standalone on an export."""
    before = (t.witness / "checkpoint").read_text()
    witness_copy = t.tmp / f"witness-{uuid.uuid4().hex}"
    shutil.copytree(t.witness, witness_copy)
    db = t.runner.invoke(cli_app, ["audit", "verify", "--witness-dir", str(t.witness)])
    if db.exit_code != 0:
        assert (t.witness / "checkpoint").read_text() == before  # failures never move it
    export = t.tmp / f"export-{uuid.uuid4().hex}.jsonl"
    exported = t.runner.invoke(cli_app, ["audit", "export", "--out", str(export)])
    assert exported.exit_code == 0, exported.output
    rc, out = _standalone(export, t.signer.verifier_key(), witness_copy)
    return db.exit_code, db.output, rc, out


def _standalone(export: Path, vkey: str, witness: Path) -> tuple[int, str]:
    """Run the standalone verifier as an auditor would: a lone file, isolated interpreter."""
    script = export.parent / "lethe_verify.py"
    shutil.copyfile(standalone.__file__, script)
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            str(export),
            "--public-key",
            vkey,
            "--witness-dir",
            str(witness),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=export.parent,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _drop_guards(conn: Connection) -> None:
    for table in GUARDED:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
            conn.execute(text(f"DROP TRIGGER {table}_no_truncate ON {table}"))
        else:
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))


def _as_admin(t: Trail, attack: Callable[[Connection], object]) -> None:
    with t.engine.begin() as conn:
        _drop_guards(conn)
        attack(conn)


def _body(conn: Connection, idx: int) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(
        conn.execute(text("SELECT body FROM audit_entry WHERE idx = :i"), {"i": idx}).scalar_one()
    )
    return value


def _write(conn: Connection, idx: int, value: dict[str, Any]) -> None:
    """Store `value` as entry `idx`, consistently: canonical body, leaf hash, columns."""
    body = dumps(value)
    conn.execute(
        text("UPDATE audit_entry SET body = :b, leaf_hash = :h, action = :a WHERE idx = :i"),
        {"b": body, "h": service.leaf_hash(body.encode()), "a": value["action"], "i": idx},
    )


def _renumber(conn: Connection, start: int, delta: int) -> None:
    """Move entries >= start by delta, rewriting their bodies' index as a careful forger would."""
    rows = (
        conn.execute(text("SELECT idx FROM audit_entry WHERE idx >= :s ORDER BY idx"), {"s": start})
        .scalars()
        .all()
    )
    conn.execute(text("UPDATE audit_entry SET idx = -idx - 1 WHERE idx >= :s"), {"s": start})
    for idx in rows:
        conn.execute(
            text("UPDATE audit_entry SET idx = :n WHERE idx = :o"),
            {"n": idx + delta, "o": -idx - 1},
        )
        value = _body(conn, idx + delta)
        value["index"] = idx + delta
        _write(conn, idx + delta, value)


def _assert_refused(t: Trail, message: str) -> tuple[str, str]:
    db_rc, db_out, sa_rc, sa_out = _verdicts(t)
    assert db_rc == 1, db_out
    assert message in " ".join(db_out.split()), db_out
    assert sa_rc != 0, sa_out  # the standalone verifier agrees
    assert "FAILED" in sa_out
    return db_out, sa_out


def test_an_intact_trail_verifies_with_both_verifiers_and_moves_the_witness(trail: Trail) -> None:
    assert "\n520\n" in (trail.witness / "checkpoint").read_text()
    _append_some(trail.engine, trail.signer, 520, 600, "more")
    db_rc, db_out, sa_rc, sa_out = _verdicts(trail)
    assert (db_rc, sa_rc) == (0, 0), db_out + sa_out
    assert "OK: 600 entries, 4 checkpoints" in sa_out
    assert "\n600\n" in (trail.witness / "checkpoint").read_text()
    assert (trail.witness / "public-key").read_text().strip() == trail.signer.verifier_key()


def test_an_edited_entry_is_caught(trail: Trail) -> None:
    def attack(conn: Connection) -> None:
        value = _body(conn, 42)
        value["action"] = "records.record.viewed"
        value["details"] = {"note": CANARY}
        _write(conn, 42, value)

    _as_admin(trail, attack)
    db_out, sa_out = _assert_refused(
        trail, "checkpoint of size 100: entries before it were changed"
    )
    assert "entry 42: its stored leaf hash" not in db_out  # the forger kept the hash consistent
    assert CANARY not in db_out and CANARY not in sa_out  # verdicts name indexes, never content


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "cli"),
        ("action", "records.record.viewed"),
        ("created_at", datetime(2020, 1, 1, tzinfo=UTC)),
        ("subject_id", None),
        ("target", "record:other"),
    ],
)
def test_an_edit_of_the_columns_alone_is_caught(trail: Trail, column: str, value: object) -> None:
    statement = text(f"UPDATE audit_entry SET {column} = :v WHERE idx = 7")
    if column == "created_at":
        statement = statement.bindparams(bindparam("v", type_=UTCDateTime()))
    _as_admin(trail, lambda c: c.execute(statement, {"v": value}))
    db_rc, db_out, _, _ = _verdicts(trail)
    assert db_rc == 1
    assert "entry 7: its columns do not match its body" in db_out
    assert "entry 6:" not in db_out and "entry 8:" not in db_out


def test_a_deleted_entry_is_caught(trail: Trail) -> None:
    _as_admin(trail, lambda c: c.execute(text("DELETE FROM audit_entry WHERE idx = 42")))
    _assert_refused(trail, "entry 42 is missing (next is 43)")


def test_a_renumbered_deletion_is_caught(trail: Trail) -> None:
    def attack(conn: Connection) -> None:
        conn.execute(text("DELETE FROM audit_entry WHERE idx = 42"))
        _renumber(conn, 43, -1)

    _as_admin(trail, attack)
    _assert_refused(trail, "checkpoint of size 100: entries before it were changed")


def test_two_swapped_entries_are_caught(trail: Trail) -> None:
    def attack(conn: Connection) -> None:
        a, b = _body(conn, 10), _body(conn, 11)
        a["index"], b["index"] = 11, 10
        _write(conn, 10, b)
        _write(conn, 11, a)

    _as_admin(trail, attack)
    _assert_refused(trail, "checkpoint of size 100: entries before it were changed")


def test_a_fabricated_entry_is_caught(trail: Trail) -> None:
    def attack(conn: Connection) -> None:
        _renumber(conn, 200, +1)
        value = _body(conn, 199)
        value.update(index=200, action="records.record.erased", details={"n": 200})
        body = dumps(value)
        conn.execute(
            text(
                "INSERT INTO audit_entry (idx, created_at, action, actor, subject_id, target, "
                "body, leaf_hash) SELECT 200, created_at, 'records.record.erased', actor, "
                "subject_id, target, :b, :h FROM audit_entry WHERE idx = 199"
            ),
            {"b": body, "h": service.leaf_hash(body.encode())},
        )

    _as_admin(trail, attack)
    _assert_refused(trail, "checkpoint of size 300: entries before it were changed")


def test_a_truncated_tail_is_caught(trail: Trail) -> None:
    _as_admin(trail, lambda c: c.execute(text("DELETE FROM audit_entry WHERE idx >= 400")))
    _assert_refused(trail, "checkpoint of size 520 but the log has only 400 entries (truncated)")


def test_a_truncated_tail_with_its_checkpoints_deleted_is_caught_by_the_witness(
    trail: Trail,
) -> None:
    def attack(conn: Connection) -> None:
        conn.execute(text("DELETE FROM audit_entry WHERE idx >= 400"))
        conn.execute(text("DELETE FROM audit_subtree WHERE start + 256 > 400"))
        conn.execute(text("DELETE FROM audit_checkpoint WHERE size > 400"))

    _as_admin(trail, attack)
    _assert_refused(trail, "the newest checkpoint is older than the witnessed size 520")


def test_history_rewritten_and_resigned_with_the_real_key_is_caught_by_the_witness(
    trail: Trail,
) -> None:
    def attack(conn: Connection) -> None:
        for table in GUARDED:
            conn.execute(text(f"DELETE FROM {table}"))

    _as_admin(trail, attack)
    previous = 0
    for size in (300, 530):  # a longer, self-consistent history signed with the real key
        _append_some(trail.engine, trail.signer, previous, size, "forged")
        previous = size
    _assert_refused(trail, "the log does not extend the witnessed size 520 (history rewritten)")


def test_a_checkpoint_signed_with_another_key_is_caught(trail: Trail, tmp_path: Path) -> None:
    other = NoteSigner.load_or_create(tmp_path / "other.key", trail.signer.name)
    with unit_of_work(trail.engine) as s:
        latest = checkpoints.latest(s)
        assert latest is not None
        note = other.sign_note(checkpoint_body(other.name, latest.size, latest.root_hash))
        s.add(
            AuditCheckpoint(size=latest.size, root_hash=latest.root_hash, note=note, created_at=NOW)
        )
    _assert_refused(trail, f"is not signed by the key {trail.signer.name}+")


def test_an_edited_checkpoint_is_caught(trail: Trail) -> None:
    def attack(conn: Connection) -> None:
        note = conn.execute(text("SELECT note FROM audit_checkpoint WHERE size = 300")).scalar_one()
        forged = note.replace("\n300\n", "\n299\n", 1)
        conn.execute(
            text("UPDATE audit_checkpoint SET note = :n, size = 299 WHERE size = 300"),
            {"n": forged},
        )

    _as_admin(trail, attack)
    _assert_refused(trail, "has a signature that does not verify (edited?)")


def test_two_checkpoints_of_one_size_with_different_roots_are_caught(trail: Trail) -> None:
    root = service.leaf_hash(b"another history")
    note = trail.signer.sign_note(checkpoint_body(trail.signer.name, 300, root))
    with unit_of_work(trail.engine) as s:
        s.add(AuditCheckpoint(size=300, root_hash=root, note=note, created_at=NOW))
    _assert_refused(trail, "fork: two checkpoints of size 300 with different roots")


def test_the_standalone_verifier_uses_no_project_code() -> None:
    source = Path(standalone.__file__).read_text()
    assert len(source.splitlines()) < 300
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= {
        "__future__",
        "argparse",
        "base64",
        "hashlib",
        "json",
        "os",
        "sys",
        "collections",
        "dataclasses",
        "decimal",
        "functools",
        "itertools",
        "pathlib",
        "typing",
        "cryptography",
    }


def test_a_tampered_stored_subtree_is_caught_before_it_serves_wrong_proofs(trail: Trail) -> None:
    _as_admin(
        trail,
        lambda c: c.execute(
            text("UPDATE audit_subtree SET hash = :h WHERE level = 8 AND start = 256"),
            {"h": b"\x00" * 32},
        ),
    )
    db_rc, db_out, sa_rc, _ = _verdicts(trail)
    assert db_rc == 1
    assert "stored subtree of 256 entries from 256 does not match the entries" in " ".join(
        db_out.split()
    )
    assert sa_rc == 0  # the export carries no subtrees: the entries themselves are intact


def test_a_swapped_signing_key_is_caught_by_the_key_pinned_in_the_witness(
    trail: Trail, settings: Settings
) -> None:
    def attack(conn: Connection) -> None:
        for table in GUARDED:
            conn.execute(text(f"DELETE FROM {table}"))

    _as_admin(trail, attack)
    settings.effective_audit_key_file.unlink()  # beyond the trust model: the key file replaced
    forger = NoteSigner.load_or_create(settings.effective_audit_key_file, trail.signer.name)
    _append_some(trail.engine, forger, 0, 600, "forged")
    result = trail.runner.invoke(cli_app, ["audit", "verify", "--witness-dir", str(trail.witness)])
    assert result.exit_code == 1
    assert "the public key differs from the one pinned in the witness directory" in " ".join(
        result.output.split()
    )
