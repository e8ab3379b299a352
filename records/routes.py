"""Read routes of this package. Writes, which also compute due dates and audit, are in
`retention.ingest_routes` (records sits below policies and audit_log)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from records import service
from records.crypto import Keyring
from records.errors import InvalidInputError
from records.http import Role, SessionDep, requires
from records.models import PersonalRecord
from records.schemas import RecordRead, SubjectRead

router = APIRouter(prefix="/v1", tags=["records"])

READERS = [Depends(requires(Role.controller, Role.dpo))]


def keyring_of(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def record_read(record: PersonalRecord, payload: dict[str, object]) -> RecordRead:
    return RecordRead.model_validate({**record.model_dump(exclude={"payload"}), "payload": payload})


@router.get("/subjects", dependencies=READERS, response_model=list[SubjectRead])
def find_subjects(
    request: Request,
    session: SessionDep,
    email: Annotated[str | None, Query(max_length=320)] = None,
    external_id: Annotated[str | None, Query(max_length=200)] = None,
) -> list[SubjectRead]:
    if (email is None) == (external_id is None):
        raise InvalidInputError("give exactly one of the query parameters email or external_id")
    found = service.find_subjects(
        session, keyring=keyring_of(request), email=email, external_id=external_id
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


@router.get("/subjects/{subject_id}/records", dependencies=READERS)
def subject_records(
    subject_id: uuid.UUID, request: Request, session: SessionDep
) -> list[RecordRead]:
    service.get_subject(session, subject_id)
    cache = service.KeyCache(keyring_of(request))
    return [
        record_read(
            record,
            service.decrypt_payload(session, keyring=cache.keyring, record=record, cache=cache),
        )
        for record in service.records_of_subject(session, subject_id)
    ]


@router.get("/records/{record_id}", dependencies=READERS)
def get_record(record_id: uuid.UUID, request: Request, session: SessionDep) -> RecordRead:
    record = service.get_record(session, record_id)
    keyring = keyring_of(request)
    return record_read(record, service.decrypt_payload(session, keyring=keyring, record=record))
