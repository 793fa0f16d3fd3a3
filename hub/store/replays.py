"""The replay guard: per source, digests of what was accepted within its window (table ``replay_guard``).

A signature proves who sent a request, not that it is the first time: the same signed request sent again
verifies again. Where the sender signs no event id (Slack, hmac-sha256, token, and GitHub and Shopify, whose
delivery id headers are not signed), the receiver hands each event a digest of what was signed and an
expiry; an unexpired digest makes the request a duplicate of the event that first carried it. The check and
the insert are one job of the event's own group commit, so the guard adds no commit and no fsync.
"""

from __future__ import annotations

import hashlib
import sqlite3

from hub.store import events

STEP = 2_000


def digest(source: str, material: bytes) -> bytes:
    """16 bytes of SHA-256 over the source name and what its sender signed (replays of one source only)."""
    return hashlib.sha256(source.encode() + b"\0" + material).digest()[:16]


def insert_event(conn: sqlite3.Connection, ev: events.NewEvent, key: bytes, expires: float, now: float
                 ) -> tuple[str, bool]:
    """``events.insert``, unless ``key`` was accepted and has not expired: then (that event's id, duplicate)."""
    row = conn.execute("SELECT event_seq FROM replay_guard WHERE digest = ? AND expires_at > ?", (key, now)).fetchone()
    if row is not None:
        return events.event_id(row[0]), True
    event_id, duplicate = events.insert(conn, ev)
    if not duplicate:
        conn.execute("INSERT OR REPLACE INTO replay_guard (digest, expires_at, event_seq) VALUES (?, ?, ?)",
                     (key, expires, events.parse_id(event_id)))
    return event_id, duplicate


def prune_step(conn: sqlite3.Connection, now: float) -> int:
    """Delete up to ``STEP`` expired digests (oldest first, by the expiry index); returns how many went."""
    return conn.execute("DELETE FROM replay_guard WHERE digest IN (SELECT digest FROM replay_guard "
                        "WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)", (now, STEP)).rowcount
