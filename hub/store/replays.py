"""The replay guard: per source, digests of what was accepted within its window (table ``replay_guard``).

A signature proves who sent a request, not that it is the first time: the same signed request sent again
verifies again. Where the sender signs no event id (Slack, hmac-sha256, token, and GitHub and Shopify, whose
delivery id headers are not signed), the receiver hands each event a digest of what was signed and an
expiry; an unexpired digest makes the request a duplicate of the event that first carried it. The check and
the insert are one job of the event's own group commit, so the guard adds no commit and no fsync.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hub.store import events
from hub.store.conn import Conn, is_postgres

STEP = 2_000


def digest(source: str, material: bytes) -> bytes:
    """16 bytes of SHA-256 over the source name and what its sender signed (replays of one source only)."""
    return hashlib.sha256(source.encode() + b"\0" + material).digest()[:16]


_INSERT = (  # events.insert's statement, unless an unexpired digest says this is a replay: one statement, one descent
    "INSERT INTO events (source, received_at, idempotency_key, content_type, headers, body, verified_by) "
    "SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM replay_guard WHERE digest = ? AND expires_at > ?) "
    "ON CONFLICT (source, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING seq"
)


def insert_event(conn: Conn, ev: events.NewEvent, key: bytes, expires: float, now: float
                 ) -> tuple[str, bool]:
    """``events.insert``, unless ``key`` was accepted and has not expired: then (that event's id, duplicate).

    Two statements on the common path (the event, then its digest), with no savepoint: if the second fails
    after the first, the event is kept without its digest, so a retry by the sender is stored twice
    (at least once, never lost). Only an I/O error or a full disk can fail it, and those fail the commit.

    On PostgreSQL several processes insert at once, and a check then an insert would let two of them given the same
    request both store it: there the digest's row comes first (``_insert_claiming``)."""
    if is_postgres(conn):
        return _insert_claiming(conn, ev, key, expires, now)
    added = conn.execute(_INSERT, (ev.source, ev.received_at, ev.idempotency_key, ev.content_type, ev.headers,
                                   ev.body, ev.verified_by, key, now)).fetchone()
    if added is not None:
        conn.execute("INSERT INTO replay_guard (digest, expires_at, event_seq) VALUES (?, ?, ?) ON CONFLICT (digest) "
                     "DO UPDATE SET expires_at = excluded.expires_at, event_seq = excluded.event_seq",
                     (key, expires, added[0]))
        return events.event_id(added[0]), False
    row = conn.execute("SELECT event_seq FROM replay_guard WHERE digest = ? AND expires_at > ?", (key, now)).fetchone()
    if row is not None:
        return events.event_id(row[0]), True
    return events.insert(conn, ev)  # not a replay: a duplicate idempotency key, which this answers


# PostgreSQL's statement: the digest's row first (inserted, or an expired one renewed), holding the event's seq
# drawn from the events' sequence, then the event with that seq, only if the digest was taken. One statement, so a
# burst of them is sent at once (hub/store/pg_intake.py).
TAKE_THEN_INSERT = (
    "WITH s AS (SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq), "
    "g AS (INSERT INTO replay_guard (digest, expires_at, event_seq) SELECT ?, ?, s.seq FROM s "
    "ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at, event_seq = excluded.event_seq "
    "WHERE replay_guard.expires_at <= ? RETURNING event_seq) "
    "INSERT INTO events (seq, source, received_at, idempotency_key, content_type, headers, body, verified_by) "
    "SELECT g.event_seq, ?, ?, ?, ?, ?, ?, ? FROM g "
    "ON CONFLICT (source, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING seq")


def take_then_insert_rows(n: int) -> str:
    """``TAKE_THEN_INSERT`` for ``n`` events in one statement, each row ``(ordinal, *taking(...))``, their digests
    distinct (two rows of one statement cannot both update one guard row). One answer row per ordinal, in order: the
    seq stored, or NULL (a replay, or an idempotency key taken: ``settled`` tells which). A guard row is renewed
    when it expired at or before its own row's ``now``."""
    return events.stored_rows(
        n, lead="digest, expires_at, now",
        lead_types="CAST(? AS bytea), CAST(? AS double precision), CAST(? AS double precision)",
        before="g AS (INSERT INTO replay_guard (digest, expires_at, event_seq) SELECT digest, expires_at, seq FROM s "
               "ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at, event_seq = excluded.event_seq "
               "WHERE replay_guard.expires_at <= (SELECT s.now FROM s WHERE s.digest = excluded.digest) "
               "RETURNING event_seq), ",
        stored="s JOIN g ON g.event_seq = s.seq")


def taking(ev: events.NewEvent, key: bytes, expires: float, now: float) -> tuple[Any, ...]:
    return (key, expires, now, ev.source, ev.received_at, ev.idempotency_key, ev.content_type, ev.headers, ev.body,
            ev.verified_by)


def _insert_claiming(conn: Conn, ev: events.NewEvent, key: bytes, expires: float, now: float) -> tuple[str, bool]:
    """Take the digest first, then store the event, in one statement. A second process given the same request waits
    on the digest's unique key until the first commits, then finds it taken: a duplicate of the first's event."""
    added = conn.execute(TAKE_THEN_INSERT, taking(ev, key, expires, now)).fetchone()
    return settled(conn, ev, key, added)


def settled(conn: Conn, ev: events.NewEvent, key: bytes, added: Any) -> tuple[str, bool]:
    """The answer for one ``TAKE_THEN_INSERT``: the new event; else the digest's event (a replay); else the event
    of the idempotency key (the digest was taken but the key was not new: the digest now names that event)."""
    if added is not None:
        return events.event_id(added[0]), False
    row = conn.execute("SELECT event_seq, EXISTS (SELECT 1 FROM events WHERE seq = replay_guard.event_seq) "
                       "FROM replay_guard WHERE digest = ?", (key,)).fetchone()
    if row is not None and row[1]:
        return events.event_id(row[0]), True
    ident, duplicate = events.insert(conn, ev)
    conn.execute("UPDATE replay_guard SET event_seq = ? WHERE digest = ?", (events.parse_id(ident), key))
    return ident, duplicate


def prune_step(conn: Conn, now: float) -> int:
    """Delete up to ``STEP`` expired digests; returns how many went. No index on the expiry (one more B-tree
    write per event): digests are random, so expired rows are spread evenly and a step reads about
    ``STEP / expired share`` rows, once per retention run."""
    return conn.execute("DELETE FROM replay_guard WHERE digest IN (SELECT digest FROM replay_guard "
                        "WHERE expires_at <= ? LIMIT ?)", (now, STEP)).rowcount


def held(conn: Conn) -> int:
    """How many digests the guard holds, expired ones that retention has not pruned yet included."""
    return int(conn.execute("SELECT count(*) FROM replay_guard").fetchone()[0])
