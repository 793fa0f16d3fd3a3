"""Retention: finished rows older than their keep window leave the store, a small range at a time.

Rows are walked in ``seq`` order (the primary key) in ranges of ``STEP``, each range deleted in its
own short write, so a prune never holds the writer for long and never scans the whole table in one
statement. A walk stops at the first range whose first row is younger than every cutoff: ``seq``
follows time, and nothing after that row can be old enough.

What goes: done deliveries (by ``done_at``) and dead ones after a longer window, with their attempt
logs; processed events (by ``received_at``) and failed ones after the longer window, unless a
delivery still reads its body (a raw ``event.received`` delivery). Findings, their history, external
refs, tokens and the audit log are state, not traffic, and stay.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

STEP = 2_000


@dataclass(frozen=True, slots=True)
class Step:
    deleted: int
    next_seq: int | None  # where the next range starts; None: the walk is over


def deliveries_step(conn: sqlite3.Connection, after: int, done_before: str | None, dead_before: str | None) -> Step:
    """Delete prunable deliveries among the ``STEP`` rows after seq ``after``."""
    rng = conn.execute("SELECT min(seq), max(seq), count(*) FROM (SELECT seq FROM deliveries WHERE seq > ? "
                       "ORDER BY seq LIMIT ?)", (after, STEP)).fetchone()
    if not rng[2]:
        return Step(0, None)
    first, last = rng[0], rng[1]
    newest_cutoff = max(c for c in (done_before, dead_before) if c)
    (first_created,) = conn.execute("SELECT created_at FROM deliveries WHERE seq = ?", (first,)).fetchone()
    if first_created >= newest_cutoff:
        return Step(0, None)
    where = " OR ".join(clause for clause, cutoff in (("(state = 'done' AND done_at < :done)", done_before),
                                                      ("(state = 'dead' AND done_at < :dead)", dead_before)) if cutoff)
    args = {"first": first, "last": last, "done": done_before, "dead": dead_before}
    seqs = [r[0] for r in conn.execute(f"SELECT seq FROM deliveries WHERE seq BETWEEN :first AND :last AND ({where})",
                                       args)]
    if seqs:
        marks = ",".join("?" * len(seqs))
        conn.execute(f"DELETE FROM delivery_attempts WHERE delivery IN ({marks})", seqs)
        conn.execute(f"DELETE FROM deliveries WHERE seq IN ({marks})", seqs)
    return Step(len(seqs), last)


def events_step(conn: sqlite3.Connection, after: int, processed_before: str | None, failed_before: str | None) -> Step:
    """Delete prunable events among the ``STEP`` rows after seq ``after``."""
    rng = conn.execute("SELECT min(seq), max(seq), count(*) FROM (SELECT seq FROM events WHERE seq > ? "
                       "ORDER BY seq LIMIT ?)", (after, STEP)).fetchone()
    if not rng[2]:
        return Step(0, None)
    first, last = rng[0], rng[1]
    newest_cutoff = max(c for c in (processed_before, failed_before) if c)
    (first_received,) = conn.execute("SELECT received_at FROM events WHERE seq = ?", (first,)).fetchone()
    if first_received >= newest_cutoff:
        return Step(0, None)
    where = " OR ".join(clause for clause, cutoff in (("(state = 'processed' AND received_at < :processed)",
                                                       processed_before),
                                                      ("(state = 'failed' AND received_at < :failed)", failed_before))
                        if cutoff)
    args = {"first": first, "last": last, "processed": processed_before, "failed": failed_before}
    deleted = conn.execute(
        f"DELETE FROM events WHERE seq BETWEEN :first AND :last AND ({where}) AND NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.event_id = 'evt_' || events.seq)", args).rowcount
    return Step(deleted, last)
