"""`lethe audit verify` over the database, and `lethe audit export` for offline verification.

The core checks (dense index, canonical bodies, signatures, roots, forks, truncation, witness)
are those of `audit_log.standalone_verify`, which an auditor runs on an export: both give the
same verdict. Over the database this also checks what only the database holds: the query
columns and cached leaf hash of each entry against its body, each checkpoint's columns against
its signed note, and the stored subtrees that proofs are built from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import String, select, type_coerce
from sqlmodel import Session, col
from sqlmodel import select as select_model

from audit_log import canonical, checkpoints, service, standalone_verify
from audit_log.models import AuditEntry, AuditSubtree
from audit_log.standalone_verify import Report, TreeChecker, VerifyError
from audit_log.tree import MIN_LEVEL

Progress = Callable[[int], None]
_BATCH = 5000


def _at_text(at: object) -> str:
    """The body's `at` for a `created_at` read without type processing.

    SQLite hands back the stored UTC text (`2026-03-27 11:00:00.000000`), PostgreSQL a datetime;
    skipping the column type's parsing keeps the verifier fast on a million rows.
    """
    if isinstance(at, str):
        return at.replace(" ", "T", 1) + "Z"
    if isinstance(at, datetime):
        return service.format_time(at if at.tzinfo else at.replace(tzinfo=UTC))
    return repr(at)


def _entry_rows(
    session: Session, report: Report, progress: Progress | None
) -> Iterator[list[tuple[int, str]]]:
    columns = (
        col(AuditEntry.idx),
        col(AuditEntry.body),
        col(AuditEntry.leaf_hash),
        type_coerce(col(AuditEntry.created_at), String),
        col(AuditEntry.action),
        col(AuditEntry.actor),
        col(AuditEntry.subject_id),
        col(AuditEntry.target),
    )
    result = session.execute(
        select(*columns).order_by(col(AuditEntry.idx)).execution_options(yield_per=_BATCH)
    )
    add = report.problems.append
    sha, enc, version = hashlib.sha256, canonical.encode_string, canonical.FORMAT_VERSION
    for batch in result.partitions():
        rows: list[tuple[int, str]] = []
        for idx, body, leaf, at, action, actor, subject_id, target in batch:
            rows.append((idx, body))
            if sha(b"\x00" + body.encode()).digest() != bytes(leaf):
                add(f"entry {idx}: its stored leaf hash does not match its body (edited)")
            # A canonical body starts with action, actor, at and ends with subject, target, v
            # (sorted keys); the shared checks report a body that is not canonical.
            head = f'{{"action":{enc(action)},"actor":{enc(actor)},"at":"{_at_text(at)}",'
            subject = "null" if subject_id is None else f'"{subject_id}"'
            tail = f',"subject":{subject},"target":{"null" if target is None else enc(target)}'
            if not (body.startswith(head) and body.endswith(f'{tail},"v":{version}}}')):
                add(f"entry {idx}: its columns do not match its body (edited)")
        if progress is not None:
            progress(len(rows))
        yield rows


def _check_subtrees(session: Session, checker: TreeChecker, report: Report) -> None:
    computed: dict[tuple[int, int], bytes] = {}
    level, hashes = MIN_LEVEL, checker.chunk_roots
    while hashes:
        for i, h in enumerate(hashes):
            computed[(level, i << level)] = h
        it = iter(hashes[: len(hashes) - len(hashes) % 2])
        hashes = [hashlib.sha256(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=True)]
        level += 1
    for stored in session.exec(select_model(AuditSubtree)):
        if computed.get((stored.level, stored.start)) != bytes(stored.hash):
            report.problems.append(
                f"stored subtree of {1 << stored.level} entries from {stored.start} does not "
                "match the entries (proofs would be wrong)"
            )


def verify_database(
    session: Session,
    *,
    verifier_key: str,
    origin: str,
    witness_dir: Path | None,
    update_witness: bool = True,
    progress: Progress | None = None,
) -> Report:
    """Verify the whole trail; on success, record the newest checkpoint in `witness_dir`."""
    stored = checkpoints.all_in_order(session)
    report = Report()
    for n, cp in enumerate(stored, 1):
        try:
            opened = standalone_verify.open_checkpoint(cp.note, verifier_key)
        except ValueError:
            continue  # the shared checks report it
        if opened.size != cp.size or opened.root != bytes(cp.root_hash):
            report.problems.append(
                f"checkpoint #{n}: its size or root column differs from its signed note (edited)"
            )
    checker = TreeChecker(())
    try:
        shared = standalone_verify.verify(
            _entry_rows(session, report, progress),
            [cp.note for cp in stored],
            verifier_key,
            origin=origin,
            witness_dir=witness_dir,
            checker=checker,
        )
    except VerifyError as exc:
        report.problems.append(str(exc))
        return report
    _check_subtrees(session, checker, report)
    shared.problems = shared.problems + report.problems
    if witness_dir is not None and update_witness and not shared.problems:
        standalone_verify.update_witness(witness_dir, shared, verifier_key)
    return shared


def export(session: Session, out: TextIO, *, verifier_key: str, origin: str) -> int:
    """Write the export `standalone_verify.py` reads; returns the number of entries.

    JSON lines, ASCII: a header, then the checkpoints (so a verifier knows which roots to
    compute before the entries stream past), then one `{"index", "body"}` line per entry.
    """
    notes = [cp.note for cp in checkpoints.all_in_order(session)]
    header = {
        "format": standalone_verify.EXPORT_FORMAT,
        "origin": origin,
        "public_key": verifier_key,
        "size": service.size(session),
        "checkpoints": len(notes),
    }
    out.write(json.dumps(header, sort_keys=True) + "\n")
    out.writelines(json.dumps({"checkpoint": note}) + "\n" for note in notes)
    result = session.execute(
        select(col(AuditEntry.idx), col(AuditEntry.body))
        .order_by(col(AuditEntry.idx))
        .execution_options(yield_per=_BATCH)
    )
    count = 0
    for batch in result.partitions():
        out.writelines(json.dumps({"index": idx, "body": body}) + "\n" for idx, body in batch)
        count += len(batch)
    return count
