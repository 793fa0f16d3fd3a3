"""``sync_state``: small JSON documents by key (poll cursors and watermarks, sync bookmarks)."""

from __future__ import annotations

from typing import Any

import orjson

from hub.store.conn import Conn


def get(conn: Conn, key: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return orjson.loads(row[0]) if row else None


def shared_value(conn: Conn, key: str, proposed: dict[str, Any], now: str) -> dict[str, Any]:
    """The value at ``key``, made ``proposed`` by whichever process asks first (several processes on one database
    agree on it: the insert is the tie-break)."""
    conn.execute("INSERT INTO sync_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
                 (key, orjson.dumps(proposed).decode(), now))
    found = get(conn, key)
    assert found is not None
    return found


def put(conn: Conn, key: str, value: dict[str, Any], now: str) -> None:
    conn.execute("INSERT INTO sync_state (key, value, updated_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                 (key, orjson.dumps(value).decode(), now))
