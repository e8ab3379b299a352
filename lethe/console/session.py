"""Console sessions and CSRF tokens: signed, expiring, bound to the API key's id.

The cookie never carries the API key. It carries the key's id, the role it had at sign-in, an
expiry and a random nonce, signed with HMAC-SHA256 under a key derived from the key file (so the
database administrator cannot forge one). Every request re-reads the key row: a revoked key or a
changed role ends its sessions at once. The CSRF token is an HMAC of the session nonce, one per
session; before sign-in (and in the privacy centre) a random `pre` cookie plays the nonce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from lethe.models import ApiKey
from records.http import Actor, NowDep, Role, SessionDep, requires

SESSION_COOKIE = "lethe_console"
PRE_COOKIE = "lethe_csrf"
SESSION_TTL = timedelta(hours=8)
PRE_TTL = timedelta(hours=2)
_PURPOSE = "console-session/1"


class SignInRequired(Exception):
    """No valid console session: the handler redirects to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


class ConsoleForbidden(Exception):
    """A signed-in user whose role may not see this page or do this action."""


class CsrfRefused(Exception):
    """A form posted without the token of this session."""


@dataclass(frozen=True)
class ConsoleUser:
    key_id: uuid.UUID
    role: Role
    nonce: str
    expires_at: datetime

    @property
    def actor(self) -> Actor:
        return Actor(id=f"key:{self.key_id}", role=self.role)


def _key(request: Request) -> bytes:
    return bytes(request.app.state.keyring.purpose_key(_PURPOSE))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(request: Request, claims: dict[str, Any]) -> str:
    payload = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.new(_key(request), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def unsign(request: Request, token: str | None, *, now: datetime) -> dict[str, Any] | None:
    """The claims of a token signed here and not expired, else None."""
    if not token or token.count(".") != 1:
        return None
    payload, mac = token.split(".")
    expected = hmac.new(_key(request), payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or int(claims.get("exp", 0)) <= now.timestamp():
        return None
    return claims


def secure_cookies(request: Request) -> bool:
    base: str = request.app.state.settings.public_base_url
    return base.lower().startswith("https://")


def set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int, path: str = "/"
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def clear_cookie(request: Request, response: Response, name: str, *, path: str = "/") -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="strict", secure=secure_cookies(request)
    )


def start_session(request: Request, response: Response, key: ApiKey, *, now: datetime) -> None:
    claims = {
        "k": str(key.id),
        "r": key.role,
        "n": secrets.token_urlsafe(16),
        "exp": int((now + SESSION_TTL).timestamp()),
    }
    set_cookie(
        request,
        response,
        SESSION_COOKIE,
        sign(request, claims),
        max_age=int(SESSION_TTL.total_seconds()),
    )


def current_user(request: Request, session: Session, *, now: datetime) -> ConsoleUser | None:
    claims = unsign(request, request.cookies.get(SESSION_COOKIE), now=now)
    if claims is None:
        return None
    try:
        key_id = uuid.UUID(str(claims["k"]))
        role = Role(str(claims["r"]))
    except (KeyError, ValueError):
        return None
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None or row.role != role.value:
        return None
    return ConsoleUser(
        key_id=key_id,
        role=role,
        nonce=str(claims.get("n", "")),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo),
    )


def csrf_token(request: Request, nonce: str) -> str:
    return _b64(hmac.new(_key(request), f"csrf|{nonce}".encode(), hashlib.sha256).digest())


def check_csrf(request: Request, nonce: str | None, presented: str | None) -> None:
    if not nonce or not presented or not hmac.compare_digest(csrf_token(request, nonce), presented):
        raise CsrfRefused()


def pre_nonce(request: Request, response: Response | None = None) -> str:
    """The nonce of the pre-session cookie (made and set on `response` when missing)."""
    nonce = request.cookies.get(PRE_COOKIE)
    if nonce and len(nonce) <= 64:
        return nonce
    nonce = secrets.token_urlsafe(16)
    if response is not None:
        set_cookie(request, response, PRE_COOKIE, nonce, max_age=int(PRE_TTL.total_seconds()))
    request.state.new_pre_nonce = nonce
    return nonce


class console_requires(requires):
    """`requires` for console pages: the session cookie instead of a bearer key.

    Without a session the page redirects to the sign-in page; with another role it answers 403.
    A subclass of `requires`, so the route walk sees the roles every console page declares.
    """

    def __call__(  # type: ignore[override]
        self, request: Request, session: SessionDep, now: NowDep
    ) -> ConsoleUser:
        user = current_user(request, session, now=now)
        if user is None:
            path = request.url.path if request.method == "GET" else "/console"
            raise SignInRequired(path)
        request.state.console_user = user
        if user.role not in self.roles:
            raise ConsoleForbidden()
        request.state.actor = user.actor
        return user


async def csrf_protect(request: Request, now: NowDep) -> None:
    """Every POST carries `csrf_token`: the session's on console pages, the pre-session one on
    the sign-in page and in the privacy centre."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    form = await request.form()
    presented = form.get("csrf_token")
    path = request.url.path
    if path.startswith("/console") and path != "/console/sign-in":
        claims = unsign(request, request.cookies.get(SESSION_COOKIE), now=now)
        if claims is None and path == "/console/sign-out":
            return  # no session left to end: nothing a forged form could do
        nonce = str(claims.get("n", "")) if claims else None
    else:
        nonce = request.cookies.get(PRE_COOKIE)
    check_csrf(request, nonce, presented if isinstance(presented, str) else None)
