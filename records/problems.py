"""How the OpenAPI document describes errors: every 4xx and 5xx is an RFC 9457 problem.

`lethe.errors` renders them; this module only declares their shape so that clients (and the
schemathesis run in `.ci/run`) can rely on it. Routes add a specific status where it means
something of its own (`problem_responses(409, description=...)`); the app declares the `4XX`
and `5XX` ranges for every operation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details; never personal data in any member."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int = Field(ge=100, le=599)
    detail: str


def _content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": Problem.model_json_schema()}}


STANDARD: dict[int | str, str] = {
    400: "A wrong one-time code, or a request the service cannot act on.",
    401: "No valid API key (`Authorization: Bearer …`).",
    403: "The key's role may not use this endpoint.",
    404: "No such resource.",
    409: "The request conflicts with the current state.",
    413: "The body is larger than the service accepts.",
    415: "The body's media type is not the one this endpoint reads.",
    422: "Invalid input: the fields are named, their values never echoed.",
    429: "Too many requests; `Retry-After` says when to try again.",
    503: "The service cannot answer now (database unavailable, overloaded); see `Retry-After`.",
    "4XX": "A client error, as a problem.",
    "5XX": "A server error, as a problem.",
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "string"},
    }
}


def problem_responses(*statuses: int | str, **descriptions: str) -> dict[int | str, Any]:
    """OpenAPI `responses` entries for `statuses`, each an `application/problem+json` body.

    >>> sorted(problem_responses(404, 409))
    [404, 409]
    """
    out: dict[int | str, Any] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": descriptions.get(f"s{status}", STANDARD.get(status, "A problem.")),
            "content": _content(),
        }
        if status in (429, 503, "5XX"):
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


# What every operation can answer: any 4xx or 5xx is a problem. Routes and routers name the
# statuses that mean something of their own (STAFF: the key is missing or of another role).
EVERY_OPERATION = problem_responses("4XX", "5XX")
STAFF = problem_responses(401, 403)
