"""The access and portability packages: every record held about the subject, decrypted, with the
information the law requires beside it — streamed in batches, never loaded whole.

The download is itself a disclosure to the subject and is audited (counts only).
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from audit_log import service as audit
from dsr import otp
from dsr.errors import PackageAccessError
from dsr.models import DsrDisclosure, DsrRequest, RequestStatus, RequestType
from dsr.policy_info import PolicyCache, processing_information
from dsr.service import EDPS_NOTE, DsrConfig
from records import crypto
from records import service as records
from records.db import new_session
from records.models import PersonalRecord, Subject
from retention import external as external_records

BATCH = 500
RIGHTS_TEXT = (
    "You have the right to access your personal data, to have it rectified, to have it erased, "
    "to restrict its processing, to object to its processing and, where the legal basis allows "
    "it, to receive it in a machine-readable form (Regulation (EU) 2018/1725, Arts 17-24; "
    "GDPR Arts 15-21). Contact the controller to exercise them, or the Data Protection Officer "
    "in case of conflict."
)
_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


@dataclass(frozen=True)
class Plan:
    request_id: uuid.UUID
    kind: str
    subject_id: uuid.UUID
    format: str
    policies: tuple[str, ...]  # the processing records whose data is in the package
    count: int
    # Staff other than the DPO read a package without restricted records' data (only storage
    # is allowed while restricted, EUDPR Art. 20); the subject's own download has it all.
    withhold_restricted: bool = False


def token_valid(request: DsrRequest, token: str | None, *, now: datetime) -> bool:
    if not token or request.package_token_hash is None:
        return False
    if request.package_token_expires_at is None or now >= request.package_token_expires_at:
        return False
    import hmac

    return hmac.compare_digest(otp.token_digest(token), request.package_token_hash)


def plan(
    session: Session,
    *,
    config: DsrConfig,
    request: DsrRequest,
    format: str,
    now: datetime,
    withhold_restricted: bool = False,
) -> Plan:
    kind = RequestType(request.type)
    if kind not in (RequestType.access, RequestType.portability):
        raise PackageAccessError("only access and portability requests have a package")
    if request.subject_id is None:
        raise PackageAccessError("no personal data is held for this request")
    if request.status not in (RequestStatus.completed.value, RequestStatus.partial.value):
        raise PackageAccessError("the package is ready once the request is processed")
    if kind is RequestType.portability and format == "html":
        raise PackageAccessError("a portability package is JSON or CSV")
    held = [
        str(p)
        for p in session.execute(
            select(col(PersonalRecord.policy))
            .where(
                PersonalRecord.subject_id == request.subject_id  # type: ignore[arg-type]
            )
            .distinct()
        ).scalars()
    ]
    if kind is RequestType.portability:
        cache = PolicyCache(session)
        held = [p for p in held if cache.allows(p, "portability")]
    count = 0
    if held:
        count = int(
            session.execute(
                select(func.count())
                .select_from(PersonalRecord)
                .where(
                    PersonalRecord.subject_id == request.subject_id,  # type: ignore[arg-type]
                    PersonalRecord.policy.in_(held),  # type: ignore[attr-defined]
                )
            ).scalar_one()
        )
    return Plan(
        request_id=request.id,
        kind=kind.value,
        subject_id=request.subject_id,
        format=format,
        policies=tuple(sorted(held)),
        count=count,
        withhold_restricted=withhold_restricted,
    )


def record_download(
    session: Session, *, request: DsrRequest, plan: Plan, actor: str, now: datetime
) -> None:
    audit.append(
        session,
        action="dsr.package.downloaded",
        actor=actor,
        now=now,
        subject_id=request.subject_id,
        target=f"dsr_request:{request.id}",
        details={"format": plan.format, "records": plan.count},
    )


_COLUMNS = (
    "id",
    "policy",
    "policy_version",
    "category",
    "subject_category",
    "context",
    "outcome",
    "source",
    "collected_at",
    "payload",
    "due_at",
    "rule_id",
    "rule_version",
    "action",
    "status",
    "restricted_at",
    "restriction_ground",
    # connectors: an external record's data is read live at its source
    "external_connector",
    "external_table",
    "external_key",
)


def _items(session: Session, config: DsrConfig, plan: Plan) -> Iterator[dict[str, Any]]:
    """The subject's records as plain rows, `BATCH` at a time by keyset on id: no ORM objects,
    nothing kept once yielded, so memory stays at one batch whatever the subject holds."""
    key_id, data_key = records.KeyCache(config.keyring).get(session, plan.subject_id)
    table = PersonalRecord.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in _COLUMNS]
    wanted = list(plan.policies)
    last: uuid.UUID | None = None
    while True:
        query = select(*columns).where(
            table.c.subject_id == plan.subject_id, table.c.policy.in_(wanted)
        )
        if last is not None:
            query = query.where(table.c.id > last)
        rows = session.execute(query.order_by(table.c.id).limit(BATCH)).all()
        if not rows:
            return
        last = rows[-1].id
        disclosed: dict[uuid.UUID, list[dict[str, str]]] = {}
        for d in session.execute(
            select(DsrDisclosure)
            .where(col(DsrDisclosure.record_id).in_([r.id for r in rows]))
            .order_by(col(DsrDisclosure.disclosed_at))
        ).scalars():
            disclosed.setdefault(d.record_id, []).append(
                {"recipient": d.recipient, "disclosed_at": d.disclosed_at.isoformat()}
            )
        live, unreadable = external_records.live_data(config.external, rows)
        for r in rows:
            withheld = plan.withhold_restricted and r.restricted_at is not None
            if r.external_connector is not None:
                data = None if withheld else live.get(r.id)
            else:
                data = (
                    json.loads(
                        crypto.open_sealed(
                            data_key,
                            key_id,
                            r.payload,
                            records.payload_binding(r.id, plan.subject_id),
                        )
                    )
                    if r.payload is not None and not withheld
                    else None
                )
            if r.id in unreadable and not withheld:
                withheld_note: str | None = external_records.UNAVAILABLE
            else:
                withheld_note = (
                    "restricted: only the data subject and the DPO read it" if withheld else None
                )
            yield {
                "id": str(r.id),
                "policy": r.policy,
                "policy_version": r.policy_version,
                "category": r.category,
                "subject_category": r.subject_category,
                "context": r.context,
                "outcome": r.outcome,
                "source": r.source
                or (
                    f"read live from {r.external_connector}"
                    if r.external_connector
                    else "provided by you"
                ),
                "collected_at": r.collected_at.isoformat(),
                "retention": {
                    "rule_id": r.rule_id,
                    "rule_version": r.rule_version,
                    "due_at": r.due_at.isoformat() if r.due_at else None,
                    "action": r.action,
                },
                "status": r.status,
                "restricted": r.restricted_at is not None,
                "restriction_ground": r.restriction_ground,
                "disclosed_to": disclosed.get(r.id, []),
                "data": data,
                "withheld": withheld_note,
            }
        if len(rows) < BATCH:
            return


def _identity(session: Session, config: DsrConfig, plan: Plan) -> dict[str, Any] | None:
    """The subject's own identity as held (decrypted): it is personal data too (Art. 17)."""
    subject = session.get(Subject, plan.subject_id)
    if subject is None or subject.identity is None:
        return None
    try:
        identity = records.read_identity(session, keyring=config.keyring, subject=subject)
    except crypto.KeyDestroyedError:
        return None
    return identity.to_json()


def _header(session: Session, config: DsrConfig, plan: Plan, now: datetime) -> dict[str, Any]:
    cache = PolicyCache(session)
    processing = []
    for reference in plan.policies:
        doc = cache.document(reference)
        processing.append(
            processing_information(doc) if doc else {"reference": reference, "unresolved": True}
        )
    return {
        "request_id": str(plan.request_id),
        "type": plan.kind,
        "generated_at": now.isoformat(),
        "subject_id": str(plan.subject_id),
        "identity": _identity(session, config, plan),
        "record_count": plan.count,
        "processing": processing,
        "your_rights": RIGHTS_TEXT,
        "complaint": EDPS_NOTE,
    }


def render(engine: Engine, *, config: DsrConfig, plan: Plan, now: datetime) -> Iterator[bytes]:
    """The package in `plan.format`, produced batch by batch in its own read session."""
    with new_session(engine) as session:
        header = _header(session, config, plan, now)
        items = _items(session, config, plan)
        if plan.format == "json":
            head = json.dumps(header, ensure_ascii=False)
            yield (head[:-1] + ', "records": [').encode()
            first = True
            for item in items:
                yield (("" if first else ",") + json.dumps(item, ensure_ascii=False)).encode()
                first = False
            yield b"]}"
        elif plan.format == "csv":
            yield from _csv(items, header["identity"])
        else:
            template = _env.get_template("package.html")
            for chunk in template.generate(header=header, records=items):
                yield chunk.encode()


def _csv(items: Iterator[dict[str, Any]], identity: dict[str, Any] | None) -> Iterator[bytes]:
    """One row per field: records of any shape fit one table; the identity comes first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["record_id", "policy", "category", "context", "collected_at", "field", "value"]
    )
    for field, value in _identity_fields(identity):
        writer.writerow(["", "", "identity", "", "", field, value])
    for item in items:
        for field, value in sorted((item["data"] or {}).items()):
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            writer.writerow(
                [
                    item["id"],
                    item["policy"],
                    item["category"],
                    item["context"] or "",
                    item["collected_at"],
                    field,
                    text,
                ]
            )
        if buffer.tell() > 64_000:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _identity_fields(identity: dict[str, Any] | None) -> Iterator[tuple[str, str]]:
    if identity is None:
        return
    for key in ("email", "name", "external_id"):
        if identity.get(key) is not None:
            yield key, str(identity[key])
    for key, value in sorted((identity.get("attributes") or {}).items()):
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        yield f"attributes.{key}", text
