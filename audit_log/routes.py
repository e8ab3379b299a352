"""Audit trail API: the latest signed checkpoint, the public key, entries and proofs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.engine import Engine

from audit_log import checkpoints, proofs
from audit_log import service as audit
from audit_log.errors import CheckpointNotFoundError
from audit_log.jobs import checkpoint_if_grown
from audit_log.schemas import ConsistencyProofOut, EntryOut, InclusionProofOut
from audit_log.signing import NoteSigner
from records.errors import ForbiddenError, UnauthenticatedError
from records.http import Actor, NowDep, Role, SessionDep, optional_actor, public, requires
from records.pagination import NEXT_LINK_HEADER, strict_query
from records.types import MAX_INDEX

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AUDITORS = [Depends(requires(Role.auditor, Role.dpo))]
CHECKPOINT_READERS = (Role.auditor, Role.dpo)


def signer_of(request: Request) -> NoteSigner:
    signer: NoteSigner = request.app.state.audit_signer
    return signer


@router.get(
    "/checkpoint",
    dependencies=[Depends(public)],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
def latest_checkpoint(
    request: Request,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor | None, Depends(optional_actor)],
) -> PlainTextResponse:
    """The latest C2SP signed note; open to all unless `checkpoint_public` is false."""
    if not getattr(request.app.state, "checkpoint_public", True):
        if actor is None:
            raise UnauthenticatedError("a valid API key is required (Authorization: Bearer …)")
        if actor.role not in CHECKPOINT_READERS:
            raise ForbiddenError("this API key's role may not use this endpoint")
    found = checkpoints.latest(session)
    if found is None and audit.size(session) > 0:
        # Entries but no checkpoint yet (a fresh deployment, before its checkpointer ran): sign
        # one now rather than answer 404. Only ever happens once per log (later calls read).
        engine: Engine = request.app.state.engine
        found = checkpoint_if_grown(engine, signer_of(request), now)
    if found is None:
        raise CheckpointNotFoundError("the log is empty: no checkpoint has been made yet")
    return PlainTextResponse(found.note, media_type="text/plain; charset=utf-8")


@router.get(
    "/public-key",
    dependencies=[Depends(public)],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
def public_key(request: Request) -> PlainTextResponse:
    """The note verifier key `name+hash+base64` that checks every checkpoint."""
    return PlainTextResponse(signer_of(request).verifier_key())


@router.get(
    "/entries",
    dependencies=[*AUDITORS, Depends(strict_query)],
    response_model=list[EntryOut],
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def list_entries(
    request: Request,
    response: Response,
    session: SessionDep,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    end: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
) -> list[EntryOut]:
    """Entries [start, end) (at most 1000); `body` is the exact string hashed into the leaf.

    The index is the cursor here: while the log goes on past `end`, a `Link: rel="next"` header
    names the following range of the same width."""
    found = proofs.entries(session, start=start, end=end)
    stop = start + proofs.MAX_ENTRIES if end is None else end
    if stop > start and audit.size(session) > stop:
        url = request.url.include_query_params(start=stop, end=stop + (stop - start))
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return found


@router.get("/proofs/inclusion", dependencies=AUDITORS, response_model=InclusionProofOut)
def inclusion_proof(
    session: SessionDep,
    index: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    size: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> InclusionProofOut:
    return proofs.inclusion(session, index=index, size=size)


@router.get("/proofs/consistency", dependencies=AUDITORS, response_model=ConsistencyProofOut)
def consistency_proof(
    session: SessionDep,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> ConsistencyProofOut:
    return proofs.consistency(session, first=first, second=second)
