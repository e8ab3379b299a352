"""Read routes of this package. Writes, which also compute due dates and audit, are in
`retention.ingest_routes` (records sits below policies and audit_log)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from records import service
from records.crypto import Keyring
from records.errors import InvalidInputError
from records.http import Role, SessionDep, requires
from records.models import PersonalRecord
from records.pagination import NEXT_LINK_HEADER, PageDep
from records.schemas import RecordRead, SubjectRead

router = APIRouter(prefix="/v1", tags=["records"])

READERS = [Depends(requires(Role.controller, Role.dpo))]


def keyring_of(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def record_read(record: PersonalRecord, payload: dict[str, object]) -> RecordRead:
    return RecordRead.model_validate({**record.model_dump(exclude={"payload"}), "payload": payload})


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
    # A blind-index bucket holds a handful of subjects: paginate what it matched in memory.
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
    dependencies=READERS,
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def subject_records(
    subject_id: uuid.UUID, request: Request, session: SessionDep, page: PageDep
) -> list[RecordRead]:
    service.get_subject(session, subject_id)
    cache = service.KeyCache(keyring_of(request))
    order = service.SUBJECT_RECORD_ORDER
    rows = service.records_of_subject(
        session, subject_id, after=page.position(order), limit=page.fetch
    )
    return [
        record_read(
            record,
            service.decrypt_payload(session, keyring=cache.keyring, record=record, cache=cache),
        )
        for record in page.finish(rows, order)
    ]


@router.get("/records/{record_id}", dependencies=READERS)
def get_record(record_id: uuid.UUID, request: Request, session: SessionDep) -> RecordRead:
    record = service.get_record(session, record_id)
    keyring = keyring_of(request)
    return record_read(record, service.decrypt_payload(session, keyring=keyring, record=record))
