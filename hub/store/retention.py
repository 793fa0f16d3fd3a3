"""Retention: finished rows older than their keep window leave the store, a small range at a time.

Rows are walked in ``seq`` order (the primary key) in ranges of ``STEP``, each range deleted in its
own short write, so a prune never holds the writer for long and never scans the whole table in one
statement. A walk stops at the first range whose first row is younger than every cutoff: ``seq``
follows time, and nothing after that row can be old enough.

What goes: done deliveries (by ``done_at``) and dead ones after a longer window, with their attempt
logs and snapshots; processed events (by ``received_at``) and failed ones after the longer window, unless a
delivery still reads its body (a raw ``event.received`` delivery); audit rows (by ``at``) after their own
window. Findings, their history, external refs and tokens are state, not traffic, and stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.store.conn import Conn

STEP = 2_000


@dataclass(frozen=True, slots=True)
class Step:
    deleted: int
    next_seq: int | None  # where the next range starts; None: the walk is over


def extent(conn: Conn) -> int:
    """The seqs a full prune walks at most, summed over its tables (a progress bar's length): max(seq) is read
    from the end of each primary key, not counted."""
    return sum(conn.execute(f"SELECT coalesce(max(seq), 0) FROM {t}").fetchone()[0]
               for t in ("deliveries", "events", "audit_log"))


def _range(conn: Conn, table: str, born: str, after: int, cutoffs: dict[str, str | None]
           ) -> tuple[int, int] | None:
    """(first, last) seq of the ``STEP`` rows after ``after``; None when there are none, or when the first was
    born after every cutoff (nothing from there on can be old enough)."""
    first, last, first_born = conn.execute(
        f"SELECT min(seq), max(seq), (SELECT {born} FROM {table} WHERE seq > :after ORDER BY seq LIMIT 1) "
        f"FROM (SELECT seq FROM {table} WHERE seq > :after ORDER BY seq LIMIT :step) AS page",
        {"after": after, "step": STEP}).fetchone()
    if first is None or first_born >= max(c for c in cutoffs.values() if c):
        return None
    return first, last


def _old(cutoffs: dict[str, str | None], at: str) -> tuple[str, dict[str, str]]:
    """SQL condition and arguments: the row's state has a cutoff and its ``at`` column is before it."""
    active = [(state, cutoff) for state, cutoff in cutoffs.items() if cutoff]
    where = " OR ".join(f"(state = :state{i} AND {at} < :cutoff{i})" for i in range(len(active)))
    args = {k: v for i, (state, cutoff) in enumerate(active) for k, v in ((f"state{i}", state), (f"cutoff{i}", cutoff))}
    return where, args


def deliveries_step(conn: Conn, after: int, done_before: str | None, dead_before: str | None) -> Step:
    """Delete prunable deliveries (with their attempt logs and snapshots) among the ``STEP`` rows after seq
    ``after``."""
    cutoffs = {"done": done_before, "dead": dead_before}
    if (rng := _range(conn, "deliveries", "created_at", after, cutoffs)) is None:
        return Step(0, None)
    where, args = _old(cutoffs, "done_at")
    seqs = [r[0] for r in conn.execute(f"SELECT seq FROM deliveries WHERE seq BETWEEN :first AND :last AND ({where})",
                                       {"first": rng[0], "last": rng[1], **args})]
    if seqs:
        marks = ",".join("?" * len(seqs))
        conn.execute(f"DELETE FROM delivery_attempts WHERE delivery IN ({marks})", seqs)
        conn.execute(f"DELETE FROM delivery_snapshots WHERE delivery IN ({marks})", seqs)
        conn.execute(f"DELETE FROM deliveries WHERE seq IN ({marks})", seqs)
    return Step(len(seqs), rng[1])


def events_step(conn: Conn, after: int, processed_before: str | None, failed_before: str | None) -> Step:
    """Delete prunable events among the ``STEP`` rows after seq ``after``, unless a delivery still reads one."""
    cutoffs = {"processed": processed_before, "failed": failed_before}
    if (rng := _range(conn, "events", "received_at", after, cutoffs)) is None:
        return Step(0, None)
    where, args = _old(cutoffs, "received_at")
    deleted = conn.execute(
        f"DELETE FROM events WHERE seq BETWEEN :first AND :last AND ({where}) AND NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.event_id = 'evt_' || events.seq)",
        {"first": rng[0], "last": rng[1], **args}).rowcount
    return Step(deleted, rng[1])


def audit_step(conn: Conn, after: int, before: str | None) -> Step:
    """Delete audit rows written before ``before`` among the ``STEP`` rows after seq ``after``."""
    if (rng := _range(conn, "audit_log", "at", after, {"audit": before})) is None or before is None:
        return Step(0, None)
    deleted = conn.execute("DELETE FROM audit_log WHERE seq BETWEEN ? AND ? AND at < ?",
                           (rng[0], rng[1], before)).rowcount
    return Step(deleted, rng[1])
