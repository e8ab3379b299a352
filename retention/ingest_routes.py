"""HTTP routes of the ingest use-cases: subjects, records, events, bulk imports (API.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from records.crypto import Keyring
from records.errors import DomainError
from records.http import Actor, NowDep, Role, SessionDep, requires
from records.schemas import (
    EventCreate,
    EventCreated,
    ImportFailure,
    ImportLine,
    ImportResult,
    RecordCreate,
    RecordIngested,
    SubjectCreate,
    SubjectCreated,
)
from records.types import EmailMemo
from retention import ingest
from retention.ingest import ImportState, LineError

router = APIRouter(prefix="/v1", tags=["records"])

Writer = Annotated[Actor, Depends(requires(Role.ingest, Role.controller))]
Importer = Annotated[Actor, Depends(requires(Role.ingest))]

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq")
IMPORT_BATCH = 1000


class UnsupportedMediaTypeError(DomainError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


def _keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


def _line_schema() -> dict[str, object]:
    # SubjectCreate is in the components already (POST /v1/subjects); point there.
    schema = ImportLine.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


@router.post(
    "/subjects",
    status_code=201,
    responses={
        200: {"description": "a live subject already has this e-mail address: its id"},
        409: {"description": "the e-mail or external_id is bound to another identity"},
    },
)
def create_subject(
    body: SubjectCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    now: NowDep,
    actor: Writer,
) -> SubjectCreated:
    resolved = ingest.resolve_subject(
        session, keyring=_keyring(request), body=body, actor=actor.ref, now=now
    )
    if not resolved.created:
        response.status_code = 200
    return SubjectCreated(id=resolved.subject.id)


@router.post(
    "/records",
    status_code=201,
    responses={200: {"description": "the same id with the same body was already stored"}},
)
def create_record(
    body: RecordCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    now: NowDep,
    actor: Writer,
) -> RecordIngested:
    record, created = ingest.ingest_record(
        session, keyring=_keyring(request), body=body, actor=actor.ref, now=now
    )
    if not created:
        response.status_code = 200
    return RecordIngested(
        id=record.id,
        due_at=record.due_at,
        rule_id=record.rule_id,
        rule_version=record.rule_version,
        status=record.status,
        action=record.action,
        policy_version=record.policy_version,
    )


@router.post("/events", status_code=201)
def create_event(
    body: EventCreate, session: SessionDep, now: NowDep, actor: Writer
) -> EventCreated:
    event = ingest.record_event(
        session,
        type=body.type,
        context=body.context,
        occurred_at=body.occurred_at,
        actor=actor.ref,
        now=now,
    )
    return EventCreated(id=event.id, affected_records=event.affected_records)


async def _lines(request: Request) -> AsyncIterator[str]:
    pending = b""
    async for chunk in request.stream():
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


@router.post(
    "/imports",
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One record a line; a subject inline as `subject` or by `subject_id`.",
            "content": {"application/x-ndjson": {"schema": _line_schema()}},
        }
    },
)
async def create_import(
    request: Request, session: SessionDep, now: NowDep, actor: Importer
) -> ImportResult:
    """Bulk import, streamed: the body is read and written `IMPORT_BATCH` lines at a time, each
    batch in its own transaction. A failure keeps the batches before it; sending the same lines
    again adds nothing."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in NDJSON_TYPES:
        raise UnsupportedMediaTypeError("send application/x-ndjson: one JSON record per line")
    state = await run_in_threadpool(ImportState, session, keyring=_keyring(request), now=now)
    # The request's transaction only authenticated the caller. End it: held for the whole
    # upload it would keep every other writer (public intake, holds) out until the end.
    await run_in_threadpool(session.commit)
    engine: Engine = request.app.state.engine
    imported = 0
    failed: list[ImportFailure] = []
    batch: list[tuple[int, ImportLine | LineError]] = []

    async def flush() -> None:
        nonlocal imported
        result = await run_in_threadpool(
            ingest.import_batch_committed,
            engine,
            state=state,
            lines=batch,
            actor=actor.ref,
            now=now,
        )
        imported += result.imported
        failed.extend(ImportFailure(line=f.line, error=f.message()) for f in result.failures)
        batch.clear()

    number = 0
    emails = EmailMemo()
    async for text in _lines(request):
        number += 1
        if text.strip():
            batch.append((number, ingest.parse_ndjson_line(number, text, emails=emails)))
        if len(batch) >= IMPORT_BATCH:
            await flush()
    if batch:
        await flush()
    return ImportResult(imported=imported, failed=failed)
