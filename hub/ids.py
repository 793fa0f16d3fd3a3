"""Identifiers and timestamps: sortable ids (ULID layout) and ISO-8601 UTC strings that sort as text."""

from __future__ import annotations

import base64
import os
import re
import time
from datetime import UTC, datetime

# RFC 4648 base32 re-lettered to Crockford's alphabet, which is in ASCII order: ids sort by time.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(prefix: str, now: float | None = None) -> str:
    """``<prefix>_`` + 26 base32 characters (Crockford alphabet): 48-bit milliseconds then 80 random bits,
    so ids sort by creation time."""
    ms = int((time.time() if now is None else now) * 1000)
    raw = ms.to_bytes(6, "big") + os.urandom(10)
    return prefix + "_" + base64.b32encode(raw).translate(_TO_CROCKFORD)[:26].decode()


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def id_time(ident: str) -> float | None:
    """When an id of ``new_id`` was made, in epoch seconds (its first 10 characters hold 50 bits: the 48-bit
    milliseconds and 2 random bits); None when ``ident`` is not laid out that way."""
    body = ident.partition("_")[2].upper()
    if len(body) != 26 or any(c not in _CROCKFORD for c in body):
        return None
    value = 0
    for c in body[:10]:
        value = value * 32 + _CROCKFORD.index(c)
    return (value >> 2) / 1000


_second_cache: tuple[int, str] = (-1, "")


def iso(ts: float | None = None) -> str:
    """Epoch seconds -> ``2026-11-22T06:23:08.123Z`` (fixed width, so text order is time order)."""
    global _second_cache
    ts = time.time() if ts is None else ts
    ms_total = int(ts * 1000)
    sec, ms = divmod(ms_total, 1000)
    cached_sec, prefix = _second_cache
    if sec != cached_sec:
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _second_cache = (sec, prefix)
    return f"{prefix}{ms:03d}Z"


def parse_iso(text: str) -> float:
    """ISO-8601 (``Z`` or offset, date only allowed) -> epoch seconds; raises ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


SQLITE_MAX_INT = 2**63 - 1  # an INTEGER column's largest value; a bigger Python int makes sqlite3 raise OverflowError
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")  # 19 digits hold SQLITE_MAX_INT


def parse_uint(text: str, high: int = SQLITE_MAX_INT) -> int | None:
    """``text`` as a non-negative integer no greater than ``high``, or None.

    Only ASCII digits: ``str.isdigit`` also accepts "²" and other scripts' digits, which ``int()`` then
    rejects (or reads as a number nobody typed), and no sign, space or underscore. Nineteen digits at most,
    so the value always fits SQLite's integer and the conversion never meets ``int()``'s digit limit."""
    if not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= high else None


def parse_seq(text: str, prefix: str) -> int | None:
    """The row number in an ``evt_12`` / ``dlv_7`` id (the prefix may be left out), or None when it is not one."""
    return parse_uint(text.removeprefix(prefix))
