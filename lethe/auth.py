"""API keys: `lethe_<prefix>_<secret>`, stored as the prefix and SHA-256 of the secret.

The secret is 32 random bytes, so a plain SHA-256 is enough (no password stretching needed);
comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from fastapi import Request
from sqlmodel import Session, select

from lethe.models import ApiKey
from records.errors import InvalidInputError
from records.http import Actor, Role

KEY_PREFIX = "lethe"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, role: str, name: str, now: datetime) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is shown once and never stored."""
    try:
        role_value = Role(role)
    except ValueError as exc:
        choices = ", ".join(r.value for r in Role)
        raise InvalidInputError(f"unknown role; choose one of {choices}") from exc
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        name=name, role=role_value.value, prefix=prefix, secret_hash=_hash(secret), created_at=now
    )
    session.add(row)
    session.flush()
    return row, f"{KEY_PREFIX}_{prefix}_{secret}"


def verify_key(session: Session, presented: str) -> ApiKey | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _hash(parts[2])):
        return None
    return row


def authenticate(request: Request, session: Session) -> Actor | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    row = verify_key(session, token.strip())
    if row is None:
        return None
    return Actor(id=f"key:{row.id}", role=Role(row.role))
