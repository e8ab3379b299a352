"""Read routes of this package. Writes, which also compute due dates and audit, are in
`retention.ingest_routes` (records sits below policies and audit_log).

Restricted records (EUDPR Art. 20 / GDPR Art. 18: the subject's restriction or objection, or a
rule with `restrict_processing`) may only be stored; among staff only the DPO reads them. A
controller gets a 403 problem for one restricted record and, in a listing, a stub that says the
record exists and is restricted, without its payload or descriptive fields. The payload of a
restricted record is not even decrypted for a controller.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from records import service
from records.crypto import Keyring
from records.errors import ForbiddenError, InvalidInputError
from records.http import Actor, Role, SessionDep, requires
from records.models import PersonalRecord
from records.pagination import NEXT_LINK_HEADER, PageDep
from records.schemas import RecordRead, RestrictedRecordRead, SubjectRead

router = APIRouter(prefix="/v1", tags=["records"])

READERS = [Depends(requires(Role.controller, Role.dpo))]
Reader = Annotated[Actor, Depends(requires(Role.controller, Role.dpo))]


class RecordRestrictedError(ForbiddenError):
    code = "record-restricted"
    title = "Record restricted"


def keyring_of(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def may_read(actor: Actor, record: PersonalRecord) -> bool:
    """Whether `actor` may read the record's contents: restricted ones only by the DPO."""
    return record.restricted_at is None or actor.role is Role.dpo


def record_read(record: PersonalRecord, payload: dict[str, object]) -> RecordRead:
    return RecordRead.model_validate(
        {
            **record.model_dump(exclude={"payload"}),
            "restricted": record.restricted_at is not None,
            "payload": payload,
        }
    )


def _payload(session: Session, cache: service.KeyCache, record: PersonalRecord) -> dict[str, Any]:
    # connectors: an external record's data lives in its source system (read live in access
    # packages); Lethe holds no payload for it, only where it is.
    if record.external_connector is not None:
        location = {
            "connector": record.external_connector,
            "table": record.external_table,
            "key": record.external_key,
        }
        return {"external_location": location}
    return service.decrypt_payload(session, keyring=cache.keyring, record=record, cache=cache)


def restricted_stub(record: PersonalRecord) -> RestrictedRecordRead:
    assert record.restricted_at is not None
    return RestrictedRecordRead(
        id=record.id,
        subject_id=record.subject_id,
        policy=record.policy,
        restricted_at=record.restricted_at,
        restriction_ground=record.restriction_ground,
    )


@router.get(
    "/subjects",
    dependencies=READERS,
    response_model=list[SubjectRead],
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def find_subjects(
    request: Request,
    session: SessionDep,
    page: PageDep,
    email: Annotated[str | None, Query(max_length=320)] = None,
    external_id: Annotated[str | None, Query(max_length=200)] = None,
) -> list[SubjectRead]:
    if (email is None) == (external_id is None):
        raise InvalidInputError("give exactly one of the query parameters email or external_id")
    found = service.find_subjects(
        session, keyring=keyring_of(request), email=email, external_id=external_id
    )
    # An exact key matches one live subject (a few where old duplicates are not merged yet):
    # paginate what it matched in memory.
    found = page.window(
        found, key=lambda f: (f[0].created_at, f[0].id), types=(datetime, uuid.UUID)
    )
    return [
        SubjectRead(
            id=subject.id,
            email=identity.email,
            name=identity.name,
            external_id=identity.external_id,
            attributes=identity.attributes,
            created_at=subject.created_at,
        )
        for subject, identity in found
    ]


@router.get(
    "/subjects/{subject_id}/records",
    description=(
        "The subject's records with their decrypted payloads. A restricted record (the "
        "subject's restriction or objection, or a rule that allows storage only) is listed "
        "whole for the DPO only; a controller sees it as `{id, subject_id, policy, "
        '"restricted": true, restricted_at, restriction_ground}` without payload.'
    ),
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def subject_records(
    subject_id: uuid.UUID, request: Request, session: SessionDep, actor: Reader, page: PageDep
) -> list[RecordRead | RestrictedRecordRead]:
    service.get_subject(session, subject_id)
    cache = service.KeyCache(keyring_of(request))
    order = service.SUBJECT_RECORD_ORDER
    rows = service.records_of_subject(
        session, subject_id, after=page.position(order), limit=page.fetch
    )
    return [
        record_read(record, _payload(session, cache, record))
        if may_read(actor, record)
        else restricted_stub(record)
        for record in page.finish(rows, order)
    ]


@router.get(
    "/records/{record_id}",
    description=(
        "The record with its decrypted payload. A restricted record is readable by the DPO "
        "only: for a controller the answer is a 403 problem `record-restricted`."
    ),
    responses={403: {"description": "the record is restricted and the caller is not the DPO"}},
)
def get_record(
    record_id: uuid.UUID, request: Request, session: SessionDep, actor: Reader
) -> RecordRead:
    record = service.get_record(session, record_id)
    if not may_read(actor, record):
        raise RecordRestrictedError(
            f"record {record_id} is restricted (storage only); only the DPO may read it"
        )
    return record_read(record, _payload(session, service.KeyCache(keyring_of(request)), record))
