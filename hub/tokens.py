"""API tokens: ``fh_<id>_<secret>``, shown once, stored as a SHA-256 digest, compared in constant time.

Tokens are 256-bit random, so a fast hash is enough (no password hashing needed); the id part
finds the row, the digest comparison uses ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from hub.ids import iso, parse_iso
from hub.store import tokens as token_rows
from hub.store.conn import Conn

SCOPES = ("ingest", "read", "replay", "admin")  # admin may do everything
PREFIX = "fh_"
MAX_EXPIRES_DAYS = 3650  # ten years; the CLI and the API refuse more (and an expiry must stay a representable date)


@dataclass(frozen=True)
class NewToken:
    id: str
    token: str  # the only time the secret exists in clear
    digest: str

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.id}_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate() -> NewToken:
    token_id = secrets.token_hex(5)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, token, digest(token))


def token_id(token: str) -> str | None:
    """The id part of a well-formed token, else None."""
    if not token.startswith(PREFIX):
        return None
    ident, sep, rest = token[len(PREFIX):].partition("_")
    return ident if sep and rest and len(ident) == 10 and all(c in "0123456789abcdef" for c in ident) else None


def matches(token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(token).encode(), stored_digest.encode())


def check(conn: Conn, token: str, now: float) -> tuple[dict[str, Any] | None, str]:
    """The token's row if it authenticates at ``now``, else None and why: ``invalid_token`` (malformed, unknown or
    a wrong secret), ``token_revoked`` or ``token_expired``. The API and the console's login both ask this."""
    ident = token_id(token)
    row = token_rows.by_id(conn, ident) if ident else None
    if row is None or not matches(token, row["hash"]):
        return None, "invalid_token"
    refused = refusal(row, now)
    return (None, refused) if refused else (row, "")


def refusal(row: dict[str, Any], now: float) -> str | None:
    """Why a token's row no longer authenticates (``token_revoked``, ``token_expired``), None while it does: a
    console session asks this again on every page, so revoking the token ends the session."""
    if row["revoked_at"]:
        return "token_revoked"
    if row["expires_at"] and parse_iso(row["expires_at"]) <= now:
        return "token_expired"
    return None


def allows(scopes: list[str], needed: str) -> bool:
    return needed in scopes or "admin" in scopes


def issue(conn: Conn, name: str, scopes: list[str], now: float,
          expires_days: int | None) -> tuple[str, dict[str, Any]]:
    """Create a token inside the caller's transaction: (the token, shown once; its row without the digest)."""
    new = generate()
    expires = iso(now + expires_days * 86400) if expires_days else None
    token_rows.insert(conn, new.id, name, new.prefix, new.digest, scopes, iso(now), expires)
    row = token_rows.by_id(conn, new.id)
    assert row is not None
    row.pop("hash")
    return new.token, row
