"""Identifiers and timestamps: sortable ids (ULID layout) and ISO-8601 UTC strings that sort as text."""

from __future__ import annotations

import base64
import os
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
