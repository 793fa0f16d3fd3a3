"""The write ``/readyz`` and ``hub serve``'s start make to prove the store takes writes now.

An empty transaction commits on a full disk (nothing to write), so the probe rewrites a small row with a fresh
blob: it fails while event writes fail, and passes again once they can succeed. Plain SQL, the same for both
engines (table ``store_probe``, migration 0007)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hub.errors import StoreError
from hub.store.conn import Conn


def touch_probe(conn: Conn) -> None:
    conn.execute("INSERT INTO store_probe (id, at, blob) VALUES (1, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET at = excluded.at, blob = excluded.blob",
                 (time.time(), os.urandom(1024)))


async def ping(write: Callable[..., Awaitable[Any]], timeout: float) -> bool:  # noqa: ASYNC109
    """True if ``write(touch_probe, single_statement=True)`` (a store's write) commits within ``timeout``."""
    try:
        await asyncio.wait_for(write(touch_probe, single_statement=True), timeout)
        return True
    except (TimeoutError, StoreError):
        return False
