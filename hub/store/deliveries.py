"""The outbox: ``deliveries`` rows (pending -> in_flight -> done | dead), their ``delivery_attempts`` and
``delivery_snapshots`` (the finding as it was, kept apart: written once, read once, never copied by the
rewrites of the row at each claim and result).

Claiming keeps order per (target, order key): a delivery is claimable only when no earlier
delivery with the same key is still pending or in flight, so an update never overtakes its create
and a later step waits for an earlier one that is retrying.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hub.ids import parse_seq
from hub.store._rows import given
from hub.store._rows import rows as _rows
from hub.store.conn import Conn, Cursor, is_postgres
from hub.store.keyset import Sort, keyset

_CLAIM = """
SELECT d.seq FROM deliveries d
WHERE d.target = ? AND d.state = 'pending' AND d.next_attempt_at <= ?
  AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.target = d.target AND e.order_key = d.order_key
                  AND e.seq < d.seq AND e.state IN ('pending', 'in_flight'))
ORDER BY d.next_attempt_at, d.seq LIMIT ?"""
_FIELDS = ("seq, 'dlv_' || seq AS id, route, target, kind, finding_id, event_id, order_key, idempotency_key, "
           "(SELECT snapshot FROM delivery_snapshots WHERE delivery = seq) AS snapshot, payload, state, attempts, "
           "created_at, next_attempt_at, last_attempt_at, last_status, last_error, done_at, "
           "remote_id")
_CLAIMED = ("seq, route, target, kind, finding_id, event_id, idempotency_key, attempts, created_at, "
            "next_attempt_at")  # what the dispatcher reads of a claimed row: less to copy out for 1,000 rows


_MAX_VARS = 30_000  # SQLite's default limit on host parameters is 32,766


@dataclass(slots=True)  # not frozen: built for every claimed row (1,000 per SIEM batch)
class ClaimedDelivery:
    """A delivery as a claim returns it: what the dispatcher reads to deliver it and record the verdict."""

    seq: int
    route: str
    target: str
    kind: str
    finding_id: str | None
    event_id: str | None
    idempotency_key: str
    attempts: int
    created_at: str
    next_attempt_at: str
    snapshot: str | None = None  # JSON {"finding", "changes"} or {"finding", "delivery"}; None: read the event

    @property
    def id(self) -> str:
        return delivery_id(self.seq)


def _claimed(conn: Conn, cur: Cursor) -> list[ClaimedDelivery]:
    """Rows of a ``RETURNING {_CLAIMED}`` as ClaimedDelivery, with their snapshots, oldest due first."""
    rows = [ClaimedDelivery(*r) for r in cur.fetchall()]
    rows.sort(key=lambda r: (r.next_attempt_at, r.seq))
    snapshots = snapshots_of(conn, [r.seq for r in rows])
    for r in rows:
        r.snapshot = snapshots.get(r.seq)
    return rows


@dataclass(frozen=True, slots=True)
class NewDelivery:
    route: str
    target: str
    kind: str
    finding_id: str | None
    event_id: str | None
    order_key: str
    idempotency_key: str
    snapshot: str | None  # JSON: {"finding": .., "changes": ..}; None for raw events (read from `events`)


@dataclass(slots=True)  # not frozen: one per delivery result, and a frozen __init__ costs several times more
class Result:
    """What one attempt decided, to be recorded."""

    seq: int
    state: str  # pending (retry) | done | dead
    next_attempt_at: str | None
    status: int | None
    reason: str
    outcome: str  # ok | retry | permanent
    duration_ms: float
    remote_id: str | None = None


def delivery_id(seq: int) -> str:
    return f"dlv_{seq}"


def parse_id(text: str) -> int | None:
    return parse_seq(text, "dlv_")


def insert(conn: Conn, rows: Sequence[NewDelivery], now: str) -> int:
    """Add outbox rows (due now); a repeated idempotency key is ignored. Returns rows added."""
    added = conn.executemany(
        "INSERT INTO deliveries (route, target, kind, finding_id, event_id, order_key, idempotency_key, created_at, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        [(r.route, r.target, r.kind, r.finding_id, r.event_id, r.order_key, r.idempotency_key, now, now)
         for r in rows]).rowcount
    conn.executemany(  # a repeated key keeps the snapshot its first delivery was given
        "INSERT INTO delivery_snapshots (delivery, snapshot) SELECT seq, ? FROM deliveries WHERE idempotency_key = ? "
        "ON CONFLICT (delivery) DO NOTHING", [(r.snapshot, r.idempotency_key) for r in rows if r.snapshot is not None])
    return added


def claim(conn: Conn, target: str, now: str, limit: int, lease_until: str) -> list[ClaimedDelivery]:
    """Mark up to ``limit`` due deliveries of ``target`` in flight until ``lease_until`` and return them (oldest
    due first).

    One statement (UPDATE .. RETURNING): choosing, marking and reading back 1,000 rows as three statements
    cost twice as much. On PostgreSQL the chosen rows are locked as they are chosen, skipping rows another process
    is claiming (``FOR UPDATE SKIP LOCKED``): two processes never claim one row, and neither waits for the other.
    The order rule needs nothing more: an earlier row of the key is pending or in flight, committed, until its
    result is written, whichever process holds it."""
    choose = _CLAIM + (" FOR UPDATE OF d SKIP LOCKED" if is_postgres(conn) else "")
    return _claimed(conn, conn.execute(f"UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, "
                                       f"last_attempt_at = ?, lease_until = ? WHERE seq IN ({choose}) "
                                       f"RETURNING {_CLAIMED}", (now, lease_until, target, now, limit)))


def peek(conn: Conn, seqs: Sequence[int]) -> list[ClaimedDelivery]:
    """These deliveries as a claim would return them, in any state, without claiming them (to preview or
    re-render what was or would be sent)."""
    rows: list[ClaimedDelivery] = []
    for start in range(0, len(seqs), _MAX_VARS):
        chunk = seqs[start:start + _MAX_VARS]
        rows += _claimed(conn, conn.execute(f"SELECT {_CLAIMED} FROM deliveries WHERE seq IN "
                                            f"({','.join('?' * len(chunk))})", chunk))
    return sorted(rows, key=lambda r: r.seq)


def snapshots_of(conn: Conn, seqs: Sequence[int]) -> dict[int, str]:
    """Snapshots by delivery seq (raw event deliveries have none: they read the event)."""
    out: dict[int, str] = {}
    for start in range(0, len(seqs), _MAX_VARS):
        chunk = seqs[start:start + _MAX_VARS]
        out.update(conn.execute(f"SELECT delivery, snapshot FROM delivery_snapshots WHERE delivery IN "
                                f"({','.join('?' * len(chunk))})", chunk).fetchall())
    return out


def due_summary(conn: Conn, target: str, now: str, limit: int) -> tuple[int, str | None]:
    """How many deliveries could be claimed now (up to ``limit``) and the oldest one's created_at."""
    row = conn.execute(f"SELECT count(*), min(created_at) FROM deliveries WHERE seq IN ({_CLAIM})",
                       (target, now, limit)).fetchone()
    return int(row[0]), row[1]


def record(conn: Conn, results: Iterable[Result], now: str) -> None:
    """Write each attempt's outcome. Rows that ended the same way (a batch the SIEM took whole) share one UPDATE."""
    results = list(results)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for r in results:
        key = (r.state, r.next_attempt_at, r.status, None if r.state == "done" else r.reason, r.remote_id)
        groups.setdefault(key, []).append(r.seq)
    for (state, next_at, status, error, remote_id), seqs in groups.items():
        done_at = now if state in ("done", "dead") else None
        for start in range(0, len(seqs), _MAX_VARS):
            chunk = seqs[start:start + _MAX_VARS]
            conn.execute(
                f"UPDATE deliveries SET state = ?, next_attempt_at = coalesce(?, next_attempt_at), last_status = ?, "
                f"last_error = ?, done_at = ?, remote_id = coalesce(?, remote_id) "
                f"WHERE seq IN ({','.join('?' * len(chunk))})",
                (state, next_at, status, error, done_at, remote_id, *chunk))
    conn.executemany(
        "INSERT INTO delivery_attempts (delivery, at, duration_ms, status, outcome, reason) VALUES (?, ?, ?, ?, ?, ?)",
        [(r.seq, now, round(r.duration_ms, 3), r.status, r.outcome, r.reason) for r in results])


def release(conn: Conn, seqs: Sequence[int]) -> None:
    """Give claimed deliveries back untried (shutdown, open circuit): the attempt is not counted."""
    marks = ",".join("?" * len(seqs))
    if seqs:
        conn.execute(f"UPDATE deliveries SET state = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 "
                     f"ELSE 0 END WHERE seq IN ({marks}) AND state = 'in_flight'", tuple(seqs))


def release_expired(conn: Conn, now: str, held: Iterable[int] = ()) -> dict[str, int]:
    """In-flight rows whose lease has passed go back to pending, due now (their attempt counts, as after a crash),
    except the ``held`` ones this process is still working on. Returns how many per target."""
    keep = set(held)
    stale = [(seq, target) for seq, target in conn.execute(
        "SELECT seq, target FROM deliveries WHERE state = 'in_flight' AND lease_until < ?", (now,)) if seq not in keep]
    released: dict[str, int] = {}
    for start in range(0, len(stale), _MAX_VARS):
        chunk = [seq for seq, _ in stale[start:start + _MAX_VARS]]
        conn.execute(f"UPDATE deliveries SET state = 'pending', next_attempt_at = ?, last_error = ? "
                     f"WHERE state = 'in_flight' AND seq IN ({','.join('?' * len(chunk))})",
                     (now, "lease expired: the result of the attempt was never recorded", *chunk))
    for _, target in stale:
        released[target] = released.get(target, 0) + 1
    return released


def reset_in_flight(conn: Conn, now: str) -> int:
    """After a crash: deliveries left in flight are retried at once (their attempt counts)."""
    return conn.execute("UPDATE deliveries SET state = 'pending', next_attempt_at = ?, "
                        "last_error = coalesce(last_error, 'interrupted: the hub stopped during the attempt') "
                        "WHERE state = 'in_flight'", (now,)).rowcount


def claim_probe(conn: Conn, target: str, now: str, lease_until: str, skip: Sequence[int] = ()
                ) -> list[ClaimedDelivery]:
    """Mark the oldest pending delivery of ``target`` (by seq, due or not, not in ``skip``) in flight for a
    circuit-breaker probe, and return it (a list of at most one row, like ``claim``).

    Due or not: after an outage the retry schedule may have put every row minutes or hours away, and the
    probe must still find out now whether the target is back. A probe made before the row's due time is not
    counted against its retries (``attempts`` stays), so a long outage does not use up the oldest rows.
    The order rule of ``claim`` holds: a row waits while an earlier one with its order key is pending."""
    skipped = f"AND d.seq NOT IN ({','.join('?' * len(skip))}) " if skip else ""
    lock = " FOR UPDATE OF d SKIP LOCKED" if is_postgres(conn) else ""
    return _claimed(conn, conn.execute(
        f"UPDATE deliveries SET state = 'in_flight', attempts = attempts + CASE WHEN next_attempt_at <= ? "
        f"OR attempts = 0 THEN 1 ELSE 0 END, last_attempt_at = ?, lease_until = ? WHERE seq = ("
        f"SELECT d.seq FROM deliveries d WHERE d.target = ? AND d.state = 'pending' {skipped}"
        f"AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.target = d.target AND e.order_key = d.order_key "
        f"AND e.seq < d.seq AND e.state IN ('pending', 'in_flight')) ORDER BY d.seq LIMIT 1{lock}) "
        f"RETURNING {_CLAIMED}", (now, now, lease_until, target, *skip)))


def expedite(conn: Conn, target: str, since: str, now: str) -> int:
    """Make due now the pending deliveries of ``target`` tried since ``since`` and deferred past ``now``: a
    target that is back gets the deliveries an outage pushed along the retry schedule at once, not minutes or
    hours later. Returns how many."""
    return conn.execute("UPDATE deliveries SET next_attempt_at = ? WHERE target = ? AND state = 'pending' "
                        "AND next_attempt_at > ? AND last_attempt_at >= ?", (now, target, now, since)).rowcount


def next_due(conn: Conn, target: str) -> str | None:
    row = conn.execute("SELECT min(next_attempt_at) FROM deliveries WHERE target = ? AND state = 'pending'",
                       (target,)).fetchone()
    return row[0] if row else None


def get(conn: Conn, ident: str) -> dict[str, Any] | None:
    seq = parse_id(ident)
    rows = _rows(conn.execute(f"SELECT {_FIELDS} FROM deliveries WHERE seq = ?", (seq,))) if seq else []
    if not rows:
        return None
    row = rows[0]
    row["attempt_log"] = _rows(conn.execute("SELECT at, duration_ms, status, outcome, reason FROM delivery_attempts "
                                            "WHERE delivery = ? ORDER BY seq", (seq,)))
    return row


# The orders of ``listing`` (migration 0011 indexes them with the seq). Only a pending delivery has a next attempt
# (the column of the others is the last one's), so that order lists one target's pending deliveries: its queue, in
# the index its worker claims from (deliveries_due), so the outbox's writes keep one index fewer.
SORTS = {"seq": "seq", "next_attempt_at": "next_attempt_at", "attempts": "attempts"}


def listing(conn: Conn, *, state: str | None = None, target: str | None = None,
            since: str | None = None, before: int | None = None, limit: int = 50, finding: str | None = None,
            event: str | None = None, sort: Sort | None = None) -> list[dict[str, Any]]:
    """Newest first; page with ``before`` = the last seq seen. Or in ``sort`` order (a key of SORTS, its ``after``
    the previous page's last (key value, seq); each row has the key's value as ``sort_key``). ``finding``: only that
    finding's deliveries.
    ``event``: the deliveries an inbound event caused: its own (event.received) and those of the finding steps it
    made, which carry the finding id, not the event's; a step and its deliveries are written in one transaction
    with one time stamp, which ties them together. Written as a union of two index searches: the same condition
    with an OR made SQLite scan every delivery (100 ms at 300,000 rows, bench/console.py)."""
    where, args = _filters(state, target, since)
    if finding is not None:
        where.append("finding_id = ?")
        args.append(finding)
    if event is not None:
        where.append("seq IN (SELECT seq FROM deliveries WHERE event_id = ? UNION ALL SELECT d.seq FROM "
                     "finding_history h JOIN deliveries d ON d.finding_id = h.finding_id AND d.created_at = h.at "
                     "WHERE h.event_id = ?)")
        args += [event, event]
    if before is not None:
        where.append("seq < ?")
        args.append(before)
    column = SORTS[sort.key] if sort else "seq"
    if column == "next_attempt_at" and (state != "pending" or target is None):
        raise ValueError("the order by next attempt is a target's queue: it needs state pending and a target")
    more, values, order = keyset(column, "seq", sort or Sort("seq"))
    sql = (f"SELECT seq, 'dlv_' || seq AS id, route, target, kind, finding_id, event_id, state, attempts, created_at, "
           f"next_attempt_at, last_status, last_error, {column} AS sort_key FROM deliveries")
    sql += f" WHERE {' AND '.join(where + more)}" if where or more else ""
    return _rows(conn.execute(f"{sql} ORDER BY {order} LIMIT ?", (*args, *values, limit)))


def _filters(state: str | None, target: str | None, since: str | None) -> tuple[list[str], list[Any]]:
    return given(("state = ?", state), ("target = ?", target), ("created_at >= ?", since))


def replay(conn: Conn, seqs: Sequence[int], now: str) -> int:
    """Send again from scratch: pending now, attempts reset, rendered payload dropped (mappings may have changed)."""
    marks = ",".join("?" * len(seqs))
    return conn.execute(f"UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, payload = NULL, "
                        f"done_at = NULL WHERE seq IN ({marks}) AND state IN ('dead', 'done')", (now, *seqs)).rowcount


def replay_page(conn: Conn, *, state: str, target: str | None, since: str | None, after: int,
                limit: int) -> list[int]:
    """Seqs of the next page to replay, in ascending order (never the whole set in memory)."""
    where, args = _filters(state, target, since)
    where.append("seq > ?")
    return [r[0] for r in conn.execute(f"SELECT seq FROM deliveries WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                                       (*args, after, limit))]


def replay_count(conn: Conn, *, state: str, target: str | None, since: str | None) -> int:
    """How many deliveries a bulk replay will queue (its progress bar's length)."""
    where, args = _filters(state, target, since)
    return int(conn.execute(f"SELECT count(*) FROM deliveries WHERE {' AND '.join(where)}", args).fetchone()[0])


def counts(conn: Conn, target: str | None = None) -> dict[str, int]:
    """Deliveries by state (only the states that have some), of one target or of all: where a queue stands."""
    where, args = _filters(None, target, None)
    sql = "SELECT state, count(*) FROM deliveries" + (f" WHERE {' AND '.join(where)}" if where else "")
    return dict(conn.execute(sql + " GROUP BY state", args).fetchall())


def queue_stats(conn: Conn) -> dict[str, tuple[int, str | None]]:
    """Per target: pending count and the oldest pending created_at."""
    rows = conn.execute("SELECT target, count(*), min(created_at) FROM deliveries WHERE state IN ('pending', "
                        "'in_flight') GROUP BY target").fetchall()
    return {t: (n, oldest) for t, n, oldest in rows}


def dead_stats(conn: Conn) -> dict[str, tuple[int, str | None]]:
    """Per target: dead letters waiting and when the oldest died."""
    rows = conn.execute("SELECT target, count(*), min(done_at) FROM deliveries WHERE state = 'dead' "
                        "GROUP BY target").fetchall()
    return {t: (n, oldest) for t, n, oldest in rows}
