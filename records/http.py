"""HTTP plumbing every domain's routes share: the unit of work, the clock, the caller's role.

Routes live in the domain packages, below `lethe`, so they cannot import `lethe.auth`. The
composition root puts an authenticator on `app.state.authenticate`; the guards here call it.
Every route must declare `Depends(requires(...))` or `Depends(public)`; a test walks the app.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from records.db import begin_write, new_session, utc_now
from records.errors import ForbiddenError, UnauthenticatedError


class Role(enum.StrEnum):
    controller = "controller"
    dpo = "dpo"
    ingest = "ingest"
    auditor = "auditor"


STAFF_ROLES: tuple[Role, ...] = (Role.controller, Role.dpo, Role.ingest, Role.auditor)


@dataclass(frozen=True)
class Actor:
    """Who acts: `key:<uuid>`, `job:<name>`, `cli` or `subject:<uuid>`; never personal data."""

    id: str
    role: Role | None = None

    @property
    def ref(self) -> str:
        return self.id


SYSTEM = Actor(id="system")

Authenticator = Callable[[Request, Session], Actor | None]


def _session(request: Request) -> Iterator[Session]:
    engine: Engine = request.app.state.engine
    with new_session(engine) as session:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            begin_write(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# scope="function": commit before the response leaves, so a failed commit is a failed request.
SessionDep = Annotated[Session, Depends(_session, scope="function")]


def clock() -> datetime:
    return utc_now()


NowDep = Annotated[datetime, Depends(clock)]


def _authenticate(request: Request, session: Session) -> Actor | None:
    authenticate: Authenticator = request.app.state.authenticate
    return authenticate(request, session)


class requires:
    """The caller holds one of `roles`: 401 without a valid key, 403 with another role."""

    def __init__(self, *roles: Role) -> None:
        if not roles:
            raise ValueError("requires() needs at least one role; use `public` for open routes")
        self.roles = frozenset(roles)

    def __call__(self, request: Request, session: SessionDep) -> Actor:
        actor = _authenticate(request, session)
        if actor is None:
            raise UnauthenticatedError("a valid API key is required (Authorization: Bearer …)")
        if actor.role not in self.roles:
            raise ForbiddenError("this API key's role may not use this endpoint")
        request.state.actor = actor
        return actor


def public() -> None:
    """Marks a route as deliberately open to anyone."""


def optional_actor(request: Request, session: SessionDep) -> Actor | None:
    """For routes that are public with a secret (a code, a token) or open to staff with a key."""
    return _authenticate(request, session)


def any_staff() -> requires:
    return requires(*STAFF_ROLES)
