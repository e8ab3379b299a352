"""HTTP routes of the policy registry (API.md "Policies"). Thin: the service does the work."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from policies import dpv, service
from policies.document import REFERENCE_PATTERN
from policies.errors import PolicyTooLargeError, UnsupportedPolicyMediaType
from policies.schemas import PolicyLoaded, PolicyRead, PolicySummaryRead, PolicyVersionRead
from records.http import Actor, NowDep, Role, SessionDep, any_staff, requires
from records.pagination import NEXT_LINK_HEADER, PageDep
from records.types import MAX_INT32

router = APIRouter(prefix="/v1/policies", tags=["policies"])

# A path that cannot be a reference is a 422 that does not repeat it.
ReferencePath = Annotated[str, Path(pattern=REFERENCE_PATTERN, max_length=64)]

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
MAX_BODY = 1_000_000


async def _yaml_body(request: Request) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise UnsupportedPolicyMediaType("send the policy file as application/yaml")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise PolicyTooLargeError(f"a policy file is at most {MAX_BODY} bytes")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise PolicyTooLargeError(f"a policy file is at most {MAX_BODY} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedPolicyMediaType("the policy file must be UTF-8 text") from exc


@router.get("", dependencies=[Depends(any_staff())], responses={200: {"headers": NEXT_LINK_HEADER}})
def list_policies(session: SessionDep, page: PageDep) -> list[PolicySummaryRead]:
    # A registry holds tens of records, each parsed once: paginate them in memory.
    summaries = page.window(
        service.list_policies(session), key=lambda s: (s.reference,), types=(str,)
    )
    return [PolicySummaryRead.of(s) for s in summaries]


_YAML_REQUEST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "string"}}},
        "description": "A policy file (see `lethe policies schema`).",
    }
}


@router.post(
    "",
    status_code=201,
    openapi_extra=_YAML_REQUEST,
    responses={200: {"description": "Same content as the current version: nothing changed."}},
)
def load_policy(
    response: Response,
    session: SessionDep,
    now: NowDep,
    actor: Annotated[Actor, Depends(requires(Role.dpo))],
    text: Annotated[str, Depends(_yaml_body)],
    filename: Annotated[
        str, Query(max_length=200, description="File name shown in error messages.")
    ] = "request body",
) -> PolicyLoaded:
    result = service.load_policy_file(
        session, path_or_text=text, actor=actor.ref, now=now, source_name=filename
    )
    if not result.created:
        response.status_code = 200
    return PolicyLoaded.of(result)


@router.get("/{reference}", dependencies=[Depends(any_staff())])
def get_policy(reference: ReferencePath, session: SessionDep) -> PolicyRead:
    row, document = service.current(session, reference)
    known = service.known_references(session)
    return PolicyRead.of(row, document, unresolved=service.unresolved_references(document, known))


@router.get(
    "/{reference}/versions",
    dependencies=[Depends(any_staff())],
    responses={200: {"headers": NEXT_LINK_HEADER}},
)
def list_versions(
    reference: ReferencePath, session: SessionDep, page: PageDep
) -> list[PolicyVersionRead]:
    every = service.versions(session, reference)
    latest = max(r.version for r in every)
    rows = page.window(every, key=lambda r: (r.version,), types=(int,))
    return [
        PolicyVersionRead(
            version=r.version,
            content_hash=r.content_hash,
            loaded_at=r.loaded_at,
            loaded_by=r.loaded_by,
            source_name=r.source_name,
            current=r.version == latest,
        )
        for r in rows
    ]


@router.get("/{reference}/versions/{version}", dependencies=[Depends(any_staff())])
def get_version(
    reference: ReferencePath,
    version: Annotated[int, Path(ge=1, le=MAX_INT32)],
    session: SessionDep,
) -> PolicyRead:
    row, document = service.get_version(session, reference, version)
    known = service.known_references(session)
    return PolicyRead.of(row, document, unresolved=service.unresolved_references(document, known))


@router.get(
    "/{reference}/dpv",
    dependencies=[Depends(any_staff())],
    response_class=JSONResponse,
    responses={200: {"content": {dpv.MEDIA_TYPE: {}}, "description": "DPV 2.x JSON-LD"}},
)
def get_policy_dpv(reference: ReferencePath, session: SessionDep) -> JSONResponse:
    row, document = service.current(session, reference)
    body = dpv.to_jsonld(document, version=row.version, content_hash=row.content_hash)
    return JSONResponse(body, media_type=dpv.MEDIA_TYPE)
