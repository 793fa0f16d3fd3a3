"""Webhook signature schemes as pure functions of (headers, raw body, secrets, now).

Every scheme verifies over the raw bytes, compares in constant time, accepts several secrets
(rotation) and, where the sender signs a timestamp, rejects one outside the tolerance. ``headers`` are
a mapping with lower-case names, as ASGI delivers them. Messages never contain secrets or signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.errors import VerificationError
from hub.ids import parse_uint

TIMESTAMPED = frozenset({"standard-webhooks", "stripe", "slack"})
FORM_SCHEMES = frozenset({"slack"})  # senders that post form data (Slack slash commands)
ID_HEADERS = {
    "github": "x-github-delivery",
    "standard-webhooks": "webhook-id",
    "shopify": "x-shopify-webhook-id",
}
DEFAULT_ID_POINTER = {"stripe": "/id"}  # Stripe puts the event id in the body
SIGNED_ID = frozenset({"standard-webhooks"})  # id header covered by the signature (not GitHub's, not Shopify's)


@dataclass(frozen=True)
class Verified:
    idempotency_key: str | None = None
    timestamp: int | None = None


class Scheme(Protocol):
    name: str
    signature_headers: tuple[str, ...]

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified: ...

    def sign(self, body: bytes, now: float, msg_id: str = "msg_test") -> dict[str, str]: ...


def _invalid(message: str) -> VerificationError:
    return VerificationError("invalid_signature", message)


def _mac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _unhex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _unb64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise _invalid(f"missing {name} header")
    return value


MAX_TIMESTAMP = 10**12  # year 33658: any real Unix time in seconds is below it, and it converts to float exactly


def _parse_ts(raw: str) -> int:
    """Unix seconds in ASCII digits. ``int()`` alone also took "+17", "1_700" and other scripts' digits, and a
    value like 10**400 that then overflowed the float arithmetic in ``_fresh`` (a 500 instead of a 401)."""
    ts = parse_uint(raw, MAX_TIMESTAMP)
    if ts is None:
        raise _invalid("timestamp is not an integer of Unix seconds")
    return ts


def _fresh(ts: int, now: float, tolerance: int) -> None:
    if abs(now - ts) > tolerance:
        raise VerificationError("stale_timestamp", f"timestamp is {int(now - ts)} s from now (tolerance {tolerance} s)")


def _utf8_keys(secrets: Sequence[str]) -> list[bytes]:
    if not secrets or any(not s for s in secrets):
        raise ValueError("every secret must be a non-empty string")
    return [s.encode() for s in secrets]


class HmacScheme:
    """HMAC-SHA256 of the raw body in one header: generic, GitHub and Shopify."""

    def __init__(self, secrets: Sequence[str], header: str, prefix: str = "", encoding: str = "hex",
                 id_header: str | None = None, name: str = "hmac-sha256"):
        self.name = name
        self.keys = _utf8_keys(secrets)
        self.header, self.prefix, self.encoding, self.id_header = header.lower(), prefix, encoding, id_header
        self.display_header = header
        self.signature_headers: tuple[str, ...] = (self.header,)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _required(headers, self.header)
        if self.prefix:
            if not value.startswith(self.prefix):
                raise _invalid(f"{self.header} does not start with {self.prefix!r}")
            value = value[len(self.prefix):]
        given = _unhex(value) if self.encoding == "hex" else _unb64(value)
        if given is None or not any(hmac.compare_digest(_mac(k, body), given) for k in self.keys):
            raise _invalid("signature does not match")
        return Verified(headers.get(self.id_header) if self.id_header else None)

    def sign(self, body: bytes, now: float, msg_id: str = "msg_test") -> dict[str, str]:
        digest = _mac(self.keys[0], body)
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        out = {self.display_header: self.prefix + encoded}
        if self.id_header:
            out[self.id_header] = msg_id
        return out


class StripeScheme:
    name = "stripe"
    signature_headers: tuple[str, ...] = ("stripe-signature",)

    def __init__(self, secrets: Sequence[str], tolerance: int = 300):
        self.keys, self.tolerance = _utf8_keys(secrets), tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        parts = [p.partition("=") for p in _required(headers, "stripe-signature").split(",")]
        stamps = [v.strip() for k, _, v in parts if k.strip() == "t"]
        if not stamps:
            raise _invalid("stripe-signature has no timestamp")
        ts = _parse_ts(stamps[0])
        given = [g for k, _, v in parts if k.strip() == "v1" and (g := _unhex(v.strip())) is not None]
        signed = stamps[0].encode() + b"." + body
        if not any(hmac.compare_digest(_mac(k, signed), g) for k in self.keys for g in given):
            raise _invalid("no v1 signature matches")
        _fresh(ts, now, self.tolerance)
        return Verified(timestamp=ts)

    def sign(self, body: bytes, now: float, msg_id: str = "msg_test") -> dict[str, str]:
        ts = str(int(now))
        return {"Stripe-Signature": f"t={ts},v1={_mac(self.keys[0], ts.encode() + b'.' + body).hex()}"}


class SlackScheme:
    name = "slack"
    signature_headers: tuple[str, ...] = ("x-slack-signature",)

    def __init__(self, secrets: Sequence[str], tolerance: int = 300):
        self.keys, self.tolerance = _utf8_keys(secrets), tolerance

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        raw_ts = _required(headers, "x-slack-request-timestamp")
        value = _required(headers, "x-slack-signature")
        ts = _parse_ts(raw_ts)
        given = _unhex(value[3:]) if value.startswith("v0=") else None
        signed = b"v0:" + raw_ts.encode() + b":" + body
        if given is None or not any(hmac.compare_digest(_mac(k, signed), given) for k in self.keys):
            raise _invalid("signature does not match")
        _fresh(ts, now, self.tolerance)
        return Verified(timestamp=ts)

    def sign(self, body: bytes, now: float, msg_id: str = "msg_test") -> dict[str, str]:
        ts = str(int(now))
        sig = _mac(self.keys[0], b"v0:" + ts.encode() + b":" + body).hex()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={sig}"}


class StandardWebhooksScheme:
    """Standard Webhooks v1 (HMAC, ``whsec_`` secrets) and v1a (ed25519, ``whpk_``/``whsk_`` keys).

    Svix sends the same scheme under ``svix-*`` header names; those are accepted too.
    """

    name = "standard-webhooks"
    signature_headers: tuple[str, ...] = ("webhook-signature", "svix-signature")

    def __init__(self, secrets: Sequence[str], tolerance: int = 300):
        if not secrets:
            raise ValueError("at least one secret is required")
        self.tolerance = tolerance
        self.hmac_keys: list[bytes] = []
        self.public_keys: list[Ed25519PublicKey] = []
        self.private_key: Ed25519PrivateKey | None = None
        for i, secret in enumerate(secrets):
            self._add_key(i, secret)

    def _add_key(self, i: int, secret: str) -> None:
        for prefix in ("whpk_", "whsk_"):
            if secret.startswith(prefix):
                raw = _unb64(secret[len(prefix):])
                want = 32 if prefix == "whpk_" else 64
                if raw is None or len(raw) != want:
                    raise ValueError(f"secret {i + 1}: a {prefix} key must be base64 of {want} bytes")
                if prefix == "whpk_":
                    self.public_keys.append(Ed25519PublicKey.from_public_bytes(raw))
                else:
                    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
                    self.private_key = self.private_key or key
                    self.public_keys.append(key.public_key())
                return
        raw = _unb64(secret.removeprefix("whsec_"))
        if not raw:
            raise ValueError(f"secret {i + 1}: expected whsec_ followed by base64 (or a whpk_/whsk_ ed25519 key)")
        self.hmac_keys.append(raw)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        pre = "webhook-" if "webhook-signature" in headers or "svix-signature" not in headers else "svix-"
        msg_id = _required(headers, pre + "id")
        raw_ts = _required(headers, pre + "timestamp")
        value = _required(headers, pre + "signature")
        ts = _parse_ts(raw_ts)
        signed = f"{msg_id}.{raw_ts}.".encode() + body
        macs = [_mac(k, signed) for k in self.hmac_keys]
        if not any(self._entry_ok(entry, signed, macs) for entry in value.split()):
            raise _invalid("no signature matches")
        _fresh(ts, now, self.tolerance)
        return Verified(msg_id, ts)

    def _entry_ok(self, entry: str, signed: bytes, macs: list[bytes]) -> bool:
        version, _, encoded = entry.partition(",")
        given = _unb64(encoded)
        if not given:
            return False
        if version == "v1":
            return any(hmac.compare_digest(m, given) for m in macs)
        if version == "v1a":
            return any(_ed25519_ok(k, given, signed) for k in self.public_keys)
        return False

    def sign(self, body: bytes, now: float, msg_id: str = "msg_test") -> dict[str, str]:
        ts = str(int(now))
        signed = f"{msg_id}.{ts}.".encode() + body
        if self.hmac_keys:
            sig = "v1," + base64.b64encode(_mac(self.hmac_keys[0], signed)).decode()
        elif self.private_key is not None:
            sig = "v1a," + base64.b64encode(self.private_key.sign(signed)).decode()
        else:
            raise ValueError("cannot sign with only a public key (whpk_); configure the whsk_ signing key")
        return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}


def _ed25519_ok(key: Ed25519PublicKey, sig: bytes, msg: bytes) -> bool:
    try:
        key.verify(sig, msg)
        return True
    except InvalidSignature:
        return False


class TokenScheme:
    """A shared secret in a header, for senders that cannot sign (``Bearer`` is accepted and stripped)."""

    name = "token"

    def __init__(self, secrets: Sequence[str], header: str):
        self.digests = [hashlib.sha256(k).digest() for k in _utf8_keys(secrets)]
        self._first = secrets[0]
        self.header, self.display_header = header.lower(), header
        self.signature_headers: tuple[str, ...] = (self.header,)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verified:
        value = _required(headers, self.header)
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        given = hashlib.sha256(value.encode()).digest()  # equal-length digests: no length leak
        if not any(hmac.compare_digest(d, given) for d in self.digests):
            raise _invalid("token does not match")
        return Verified()

    def sign(self, body: bytes, now: float, msg_id: str = "msg_test") -> dict[str, str]:
        bearer = "Bearer " if self.header == "authorization" else ""
        return {self.display_header: bearer + self._first}


def build(scheme: str, secrets: Sequence[str], *, header: str | None = None, prefix: str = "",
          encoding: str = "hex", tolerance: int = 300) -> Scheme:
    """Construct a scheme; raises ValueError (without secret values) when the secrets are unusable."""
    if scheme == "hmac-sha256":
        return HmacScheme(secrets, header or "X-Signature", prefix, encoding)
    if scheme == "github":
        return HmacScheme(secrets, "X-Hub-Signature-256", "sha256=", "hex", ID_HEADERS["github"], "github")
    if scheme == "shopify":
        return HmacScheme(secrets, "X-Shopify-Hmac-Sha256", "", "base64", ID_HEADERS["shopify"], "shopify")
    if scheme == "stripe":
        return StripeScheme(secrets, tolerance)
    if scheme == "slack":
        return SlackScheme(secrets, tolerance)
    if scheme == "standard-webhooks":
        return StandardWebhooksScheme(secrets, tolerance)
    if scheme == "token":
        return TokenScheme(secrets, header or "Authorization")
    raise ValueError(f"unknown scheme {scheme!r}")
