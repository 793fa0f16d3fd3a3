"""The write ``/readyz`` and ``hub serve``'s start make to prove the store takes writes now.

An empty transaction commits on a full disk (nothing to write), so the probe rewrites a small row with a fresh
blob: it fails while event writes fail, and passes again once they can succeed. Plain SQL, the same for both
engines (table ``store_probe``, migration 0007)."""

from __future__ import annotations

import os
import time

from hub.store.conn import Conn


def touch_probe(conn: Conn) -> None:
    conn.execute("INSERT INTO store_probe (id, at, blob) VALUES (1, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET at = excluded.at, blob = excluded.blob",
                 (time.time(), os.urandom(1024)))
