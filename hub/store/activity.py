"""The console's overview over a recent window: events received per source, delivery attempts per target and per
minute.

Rows are numbered in commit order, and their times follow it, so each query starts at the window's first row, found
by walking the primary key back from the newest row: what it costs follows the rows in the window, not the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.store.conn import Conn


@dataclass(frozen=True, slots=True)
class SourceActivity:
    source: str
    received: int  # events stored (duplicates are answered, not stored)
    failed: int  # of those, events whose processing failed


@dataclass(frozen=True, slots=True)
class Attempts:
    target: str
    minute: str  # 2026-11-22T06:23
    outcome: str  # ok | retry | permanent
    count: int


def _window_start(conn: Conn, table: str, column: str, since: str) -> int:
    row = conn.execute(f"SELECT seq FROM {table} WHERE {column} < ? ORDER BY seq DESC LIMIT 1", (since,)).fetchone()
    return int(row[0]) if row else 0


def sources(conn: Conn, since: str) -> list[SourceActivity]:
    """Events received at or after ``since``, per source."""
    start = _window_start(conn, "events", "received_at", since)
    return [SourceActivity(*r) for r in conn.execute(
        "SELECT source, count(*), sum(state = 'failed') FROM events WHERE seq > ? AND received_at >= ? "
        "GROUP BY source ORDER BY source", (start, since))]


def attempts(conn: Conn, since: str) -> list[Attempts]:
    """Delivery attempts made at or after ``since``, per target, minute and outcome."""
    start = _window_start(conn, "delivery_attempts", "at", since)
    return [Attempts(*r) for r in conn.execute(
        "SELECT d.target, substr(a.at, 1, 16), a.outcome, count(*) FROM delivery_attempts a "
        "JOIN deliveries d ON d.seq = a.delivery WHERE a.seq > ? AND a.at >= ? GROUP BY 1, 2, 3", (start, since))]
