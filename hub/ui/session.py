"""Console sessions: a signed cookie that names the API token it was opened with, and the CSRF token of its forms.

The cookie holds ``payload.signature``: the payload is ``{"n": nonce, "t": token id or null, "e": expiry}`` as
base64url JSON, the signature an HMAC-SHA256 of it under the console's key (``console.session_secret``, else a
random key made when the process starts, so a restart ends every session). Nothing secret is in the payload: the
token itself is never stored, and every page checks its row again (a revoked or expired token ends the session).
A session without a token is the login form's: its nonce makes the form's CSRF token before anyone logs in.
A CSRF token is the HMAC of the session's nonce, so it is tied to one session and needs no server-side state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

COOKIE = "hub_console"
LOGIN_SECS = 3600  # how long a login form's session lasts


@dataclass(frozen=True)
class Session:
    nonce: str
    token_id: str | None
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, key: bytes | None, hours: float):
        self.key = key or secrets.token_bytes(32)
        self.secs = hours * 3600

    def _sign(self, purpose: bytes, data: bytes) -> str:
        return _b64(hmac.new(self.key, purpose + b":" + data, hashlib.sha256).digest())

    def issue(self, token_id: str | None, now: float) -> tuple[Session, str]:
        """A new session (a fresh nonce, so logging in never keeps the form's) and its cookie value."""
        session = Session(secrets.token_urlsafe(16), token_id, now + (self.secs if token_id else LOGIN_SECS))
        payload = _b64(orjson.dumps({"n": session.nonce, "t": session.token_id, "e": session.expires}))
        return session, f"{payload}.{self._sign(b'session', payload.encode())}"

    def read(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie value if its signature holds and it has not expired, else None."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(b"session", payload.encode()).encode()):
            return None
        try:
            data = orjson.loads(_unb64(payload))
            session = Session(str(data["n"]), data["t"], float(data["e"]))
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def csrf(self, session: Session) -> str:
        return self._sign(b"csrf", session.nonce.encode())

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf(session).encode())
