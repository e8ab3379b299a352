"""One-time codes and download tokens: random, stored only as salted HMAC-SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets

CODE_DIGITS = 6


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_salt() -> str:
    return secrets.token_hex(16)


def digest(secret: str, salt: str) -> str:
    # The per-request salt is the HMAC key: equal codes of two requests never hash alike.
    return hmac.new(bytes.fromhex(salt), secret.strip().encode(), hashlib.sha256).hexdigest()


def matches(secret: str, salt: str | None, stored: str | None) -> bool:
    if not salt or not stored:
        return False
    return hmac.compare_digest(digest(secret, salt), stored)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    # 256 random bits: a plain SHA-256 suffices (no salt or stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()
