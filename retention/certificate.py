"""Certificates of disposition (DESIGN §5.5): what a run did, signed and chained.

The certificate is canonical JSON (sorted keys, no whitespace) holding counts per processing
record, rule version and action, the pseudonymous ids of what was destroyed, anonymised,
handed over, kept for a hold or failed, and until when residual copies (backups) stay readable.
Each certificate carries the SHA-256 of the previous one and its sequence number, and is signed
with the audit log's Ed25519 key, so an auditor can check the chain offline with only the
public key. It contains no personal data: ids, processing-record references and counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from audit_log import service as audit
from retention.errors import CertificateNotReadyError
from retention.models import ItemOutcome, PurgeItem, PurgeRun

if TYPE_CHECKING:
    from retention.purge import PurgeContext

FORMAT = "lethe-certificate-of-disposition/1"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _ids(session: Session, run: PurgeRun, outcome: ItemOutcome) -> list[str]:
    rows = session.execute(
        select(col(PurgeItem.record_id))
        .where(col(PurgeItem.run_id) == run.id, col(PurgeItem.outcome) == outcome.value)
        .order_by(col(PurgeItem.record_id))
    ).scalars()
    return [str(r) for r in rows]


def _held(session: Session, run: PurgeRun) -> list[dict[str, Any]]:
    rows = session.execute(
        select(col(PurgeItem.record_id), col(PurgeItem.note))
        .where(
            col(PurgeItem.run_id) == run.id,
            col(PurgeItem.outcome) == ItemOutcome.skipped_hold.value,
        )
        .order_by(col(PurgeItem.record_id))
    ).all()
    return [{"record_id": str(r), "kept_by": (n or "").split(",")} for r, n in rows]


def _failed(session: Session, run: PurgeRun) -> list[dict[str, Any]]:
    rows = session.execute(
        select(col(PurgeItem.record_id), col(PurgeItem.note))
        .where(col(PurgeItem.run_id) == run.id, col(PurgeItem.outcome) == ItemOutcome.failed.value)
        .order_by(col(PurgeItem.record_id))
    ).all()
    return [{"record_id": str(r), "error": n} for r, n in rows]


def body(session: Session, *, run: PurgeRun, now: datetime, ctx: PurgeContext) -> dict[str, Any]:
    from retention import purge

    tally = purge.counts(session, run.id)
    destroyed, keys_destroyed = purge.destroyed_ids(session, run.id)
    config = ctx.config
    epoch_started = ctx.keyring_epoch_created_at() if ctx.keyring_epoch_created_at else None
    # The epoch wrapping the destroyed keys retires at the next rotation and is destroyed a
    # backup window later; until then a restored backup can still unwrap them.
    retire = (epoch_started or now) + timedelta(days=config.kek_rotation_days)
    readable_until = retire + timedelta(days=config.kek_backup_window_days)
    return {
        "format": FORMAT,
        "run_id": str(run.id),
        "dry_run": run.dry_run,
        "status": run.status,
        "trigger": run.trigger,
        "actor": run.actor,
        "created_at": audit.format_time(run.created_at),
        "started_at": audit.format_time(run.started_at) if run.started_at else None,
        "finished_at": audit.format_time(run.finished_at or now),
        "horizon_at": audit.format_time(run.horizon_at),
        "approved_by": run.approved_by,
        "pause_reason": run.pause_reason,
        "counts": tally,
        "by_rule": purge.by_rule(session, run.id),
        "destroyed": destroyed,
        "anonymised": _ids(session, run, ItemOutcome.anonymised),
        "handed_over": _ids(session, run, ItemOutcome.handed_over),
        "review": _ids(session, run, ItemOutcome.review),
        "skipped_hold": _held(session, run),
        "skipped_stale": _ids(session, run, ItemOutcome.skipped_stale),
        "failed": _failed(session, run),
        "subject_keys_destroyed": keys_destroyed,
        "residual_copies": _residual_copies(run, readable_until),
    }


def _residual_copies(run: PurgeRun, readable_until: datetime) -> dict[str, Any]:
    if run.dry_run:
        # A dry run changed nothing: claiming rows deleted and keys destroyed would be false.
        return {"live_database": "unchanged: dry run, nothing was deleted or destroyed"}
    return {
        "live_database": "none: rows deleted, subject data keys destroyed",
        "backups": "encrypted payloads stay in backups; their data keys are wrapped by a "
        "key epoch that is destroyed at the latest at backups_readable_until",
        "backups_readable_until": audit.format_time(readable_until),
    }


def issue(session: Session, *, run: PurgeRun, now: datetime, ctx: PurgeContext) -> None:
    """Build, chain and sign the certificate of `run` (the caller holds the run lock)."""
    previous = session.execute(
        select(PurgeRun)
        .where(col(PurgeRun.certificate_seq).is_not(None))
        .order_by(col(PurgeRun.certificate_seq).desc())
        .limit(1)
    ).scalar_one_or_none()
    value = body(session, run=run, now=now, ctx=ctx)
    value["sequence"] = 0 if previous is None else int(previous.certificate_seq or 0) + 1
    value["previous_sha256"] = None if previous is None else previous.certificate_sha256
    text = canonical(value)
    digest = hashlib.sha256(text.encode()).hexdigest()
    run.certificate = text
    run.certificate_seq = value["sequence"]
    run.certificate_sha256 = digest
    if ctx.signer is not None:
        run.signature = base64.b64encode(ctx.signer.sign(text.encode())).decode()


def signed(run: PurgeRun, *, verifier_key: str | None) -> dict[str, Any]:
    """What `GET /v1/purges/{id}/certificate` serves."""
    if run.certificate is None:
        raise CertificateNotReadyError(f"disposition run {run.id} is {run.status}")
    return {
        "certificate": json.loads(run.certificate),
        "body": run.certificate,
        "sha256": run.certificate_sha256,
        "signature": run.signature,
        "signature_algorithm": "Ed25519" if run.signature else None,
        "public_key": verifier_key,
    }


def chain_problems(session: Session) -> list[str]:
    """Breaks in the certificate chain (hash or sequence); empty when it holds."""
    runs = list(
        session.execute(
            select(PurgeRun)
            .where(col(PurgeRun.certificate_seq).is_not(None))
            .order_by(col(PurgeRun.certificate_seq))
        ).scalars()
    )
    problems: list[str] = []
    previous: str | None = None
    for expected, run in enumerate(runs):
        assert run.certificate is not None
        value = json.loads(run.certificate)
        if hashlib.sha256(run.certificate.encode()).hexdigest() != run.certificate_sha256:
            problems.append(f"run {run.id}: hash mismatch")
        if value.get("sequence") != expected:
            problems.append(f"run {run.id}: sequence {value.get('sequence')} != {expected}")
        if value.get("previous_sha256") != previous:
            problems.append(f"run {run.id}: previous hash mismatch")
        previous = run.certificate_sha256
    return problems


def count_certificates(session: Session) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(PurgeRun)
            .where(col(PurgeRun.certificate_seq).is_not(None))
        ).scalar_one()
    )
