"""The console's overview over a recent window: events received per source, delivery attempts per target and per
minute.

What each query costs follows the rows in the window, not the table: events are found by the received-at index;
attempts, whose rows are numbered in commit order with times that follow it, from the window's first row, found by
walking the primary key back from the newest row.
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
    """Events received at or after ``since``, per source: a search of the received-at index (migration 0011). The
    walk back from the newest row is for tables without one; with the index there, the planner read the whole index
    to find that start (70 ms at 300,000 events, bench/console.py's overview)."""
    return [SourceActivity(*r) for r in conn.execute(
        "SELECT source, count(*), count(*) FILTER (WHERE state = 'failed') FROM events WHERE received_at >= ? "
        "GROUP BY source ORDER BY source", (since,))]


def attempts(conn: Conn, since: str) -> list[Attempts]:
    """Delivery attempts made at or after ``since``, per target, minute and outcome."""
    start = _window_start(conn, "delivery_attempts", "at", since)
    return [Attempts(*r) for r in conn.execute(
        "SELECT d.target, substr(a.at, 1, 16), a.outcome, count(*) FROM delivery_attempts a "
        "JOIN deliveries d ON d.seq = a.delivery WHERE a.seq > ? AND a.at >= ? GROUP BY 1, 2, 3", (start, since))]
