"""Queries on the ``events`` table: the durable record of every verified inbound event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from hub.errors import AdapterError
from hub.ids import parse_seq
from hub.store._rows import given
from hub.store._rows import rows as _rows
from hub.store.conn import Conn, is_postgres
from hub.store.dialect import one_of
from hub.store.keyset import Sort, keyset

COLUMNS = "source, received_at, idempotency_key, content_type, headers, body, verified_by"  # params(ev)'s order
INSERT = (
    f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (source, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING seq"
)
ROW_TYPES = ("CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS bytea), "
             "CAST(? AS text)")  # COLUMNS' types: a VALUES list takes its columns' types from its first row


def stored_rows(n: int, *, lead: str = "", lead_types: str = "", before: str = "", stored: str = "s") -> str:
    """PostgreSQL intake's statement (pg_intake.py), rows ``(ordinal, *params(ev))``; with a ``lead``, the skeleton of
    replays.take_then_insert_rows. ``n`` VALUES rows of ``(o, <lead>, COLUMNS)``, each given the seq its
    event gets, drawn in ordinal order (so ids grow in it), ``before`` (CTEs ending in ", ") run first, and the events
    of ``stored`` (rows of ``s``) inserted. The answer is one row per ordinal, in order: the seq stored, or NULL for
    an event not stored (its idempotency key taken, or left out by ``stored``)."""
    typed = ", ".join(t for t in ("CAST(? AS integer)", lead_types, ROW_TYPES) if t)
    rows = ", ".join([f"({typed})", *["(" + ", ".join(["?"] * typed.count("?")) + ")"] * (n - 1)])
    columns = ", ".join(f"s.{c}" for c in COLUMNS.split(", "))
    return (f"WITH v (o, {lead + ', ' if lead else ''}{COLUMNS}) AS (VALUES {rows}), "
            "s AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq, v.* FROM v "
            f"ORDER BY o), {before}"
            f"e AS (INSERT INTO events (seq, {COLUMNS}) SELECT s.seq, {columns} FROM {stored} ORDER BY s.seq "
            "ON CONFLICT (source, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING seq) "
            "SELECT e.seq FROM s LEFT JOIN e ON e.seq = s.seq ORDER BY s.o")


_STATE = "CASE WHEN state = 'pending' AND wait_until IS NOT NULL THEN 'waiting' ELSE state END AS state"
_SUMMARY = (f"seq, 'evt_' || seq AS id, source, received_at, idempotency_key, content_type, verified_by, {_STATE}, "
            "attempts, error, processed_at, wait_until, length(body) AS size")


def event_id(seq: int) -> str:
    """Events are numbered in commit order; the id is that number (short to type, no extra index)."""
    return f"evt_{seq}"


def parse_id(text: str) -> int | None:
    return parse_seq(text, "evt_")


@dataclass(frozen=True, slots=True)
class NewEvent:
    source: str
    received_at: str
    idempotency_key: str | None
    content_type: str | None
    headers: str  # JSON, secret-bearing headers already redacted
    body: bytes
    verified_by: str


@dataclass(frozen=True)
class StoredEvent:
    """A stored inbound event as adapters, routes and raw (``event.received``) deliveries see it."""

    id: str
    source: str
    received_at: str
    content_type: str | None
    headers: dict[str, str]
    body: bytes
    verified_by: str = ""

    @cached_property
    def data(self) -> Any:
        """The body parsed as JSON (AdapterError if it is not JSON)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise AdapterError(f"body is not JSON: {exc}") from None

    def public(self) -> dict[str, Any]:
        """What routes and SIEM mappings see of a raw event."""
        try:
            body: Any = self.data
        except AdapterError:
            body = self.body.decode("utf-8", "replace")
        return {"id": self.id, "source": self.source, "received_at": self.received_at,
                "verified_by": self.verified_by, "content_type": self.content_type, "body": body}


@dataclass(frozen=True, slots=True)
class EventRow:
    """An ``events`` row with its body, as the pipeline and the dispatcher read it. ``event()`` decodes the stored
    headers: apart from the query, so that one undecodable row fails that event alone, not the whole read."""

    seq: int
    source: str
    received_at: str
    content_type: str | None
    headers: str  # JSON
    body: bytes
    verified_by: str

    @property
    def id(self) -> str:
        return event_id(self.seq)

    def event(self) -> StoredEvent:
        return StoredEvent(self.id, self.source, self.received_at, self.content_type, orjson.loads(self.headers),
                           self.body, self.verified_by)


_ROW = "seq, source, received_at, content_type, headers, body, verified_by"


def params(ev: NewEvent) -> tuple[Any, ...]:
    """INSERT's arguments for ``ev``."""
    return ev.source, ev.received_at, ev.idempotency_key, ev.content_type, ev.headers, ev.body, ev.verified_by


def insert(conn: Conn, ev: NewEvent) -> tuple[str, bool]:
    """Store an event once per (source, idempotency key). Returns (stored id, was a duplicate)."""
    added = conn.execute(INSERT, (ev.source, ev.received_at, ev.idempotency_key, ev.content_type,
                                   ev.headers, ev.body, ev.verified_by)).fetchone()
    if added is not None:
        return event_id(added[0]), False
    row = conn.execute("SELECT seq FROM events WHERE source = ? AND idempotency_key = ?",
                       (ev.source, ev.idempotency_key)).fetchone()
    return event_id(row[0]), True



SORTS = {"seq": "seq", "received_at": "received_at"}  # the orders of ``listing``; migration 0011 indexes received_at


def listing(conn: Conn, *, source: str | None = None, state: str | None = None,
            limit: int = 50, before: int | None = None, since: str | None = None,
            until: str | None = None, text: str | None = None, path: str | None = None,
            path_value: str | None = None, sort: Sort | None = None) -> list[dict[str, Any]]:
    """Newest first, without bodies; page with ``before`` = the last ``seq`` seen. Or in ``sort`` order (a key of
    SORTS, its ``after`` the previous page's last (key value, seq); each row has the key's value as ``sort_key``).
    ``since``/``until``: received
    at or after / before these times. ``waiting`` is a pending event held back until ``wait_until`` (its source's
    API is down; ``error`` says why). ``text``: bytes contained in the body; ``path``/``path_value``: JSON bodies with
    ``path_value`` (compared as text) at that JSON path, which the caller has checked."""
    where: list[str] = []
    args: list[Any] = []
    if state == "waiting":
        where.append("state = 'pending' AND wait_until IS NOT NULL")
        state = None
    more, values = given(("source = ?", source), ("state = ?", state), ("received_at >= ?", since),
                         ("received_at < ?", until))
    where, args = where + more, args + values
    if text is not None:
        where.append("position(? IN body) > 0" if is_postgres(conn) else "instr(body, ?) > 0")
        args.append(text.encode())
    if path is not None and is_postgres(conn):  # hub_try_json: pg_schema.py; keys quoted, as jsonpath wants them
        where.append("jsonb_path_query_first(hub_try_json(body), CAST(? AS jsonpath)) #>> '{}' = ?")
        args += [re.sub(r"\.([A-Za-z0-9_]+)", r'."\1"', path), path_value]
    elif path is not None:
        where.append("CASE WHEN json_valid(CAST(body AS TEXT)) "
                     "THEN CAST(json_extract(CAST(body AS TEXT), ?) AS TEXT) END = ?")
        args += [path, path_value]
    if before is not None:
        where.append("seq < ?")
        args.append(before)
    column = SORTS[sort.key] if sort else "seq"
    more, values, order = keyset(column, "seq", sort or Sort("seq"))
    sql = f"SELECT {_SUMMARY}, {column} AS sort_key FROM events" + (f" WHERE {' AND '.join(where + more)}"
                                                                   if where or more else "")
    return _rows(conn.execute(f"{sql} ORDER BY {order} LIMIT ?", (*args, *values, limit)))


def get(conn: Conn, ident: str) -> dict[str, Any] | None:
    seq = parse_id(ident)
    if seq is None:
        return None
    rows = _rows(conn.execute(f"SELECT 'evt_' || seq AS id, *, {_STATE} FROM events WHERE seq = ?", (seq,)))
    return rows[0] if rows else None


_READY = ("SELECT {row} FROM events e WHERE state = 'pending' AND (wait_until IS NULL OR wait_until <= ?) "
          "AND NOT EXISTS (SELECT 1 FROM events w WHERE w.wait_until IS NOT NULL AND w.source = e.source "
          "AND w.seq < e.seq AND w.state = 'pending' AND w.wait_until > ?) ORDER BY seq LIMIT ?")


def pending(conn: Conn, limit: int, now: str) -> list[EventRow]:
    """The oldest pending events, in commit order, with bodies; not those waiting past ``now``, nor the later
    events of their source (a finding's steps are applied in order)."""
    return [EventRow(*r) for r in conn.execute(_READY.format(row=_ROW), (now, now, limit))]


def wait(conn: Conn, seq: int, until: str, reason: str) -> bool:
    """Hold a pending event back until ``until``, saying why; False if it is not pending any more."""
    return conn.execute("UPDATE events SET wait_until = ?, error = ? WHERE seq = ? AND state = 'pending'",
                        (until, reason, seq)).rowcount == 1


def take(conn: Conn, seq: int, now: str) -> bool:
    """Mark a pending event processed (inside the transaction that applies it); False if it is not pending."""
    return conn.execute("UPDATE events SET state = 'processed', processed_at = ?, attempts = attempts + 1, "
                        "error = NULL, wait_until = NULL WHERE seq = ? AND state = 'pending'", (now, seq)).rowcount == 1


def take_many(conn: Conn, seqs: list[int], now: str) -> set[int]:
    """``take`` for several events in one statement; returns the seqs it took (those still pending)."""
    if not seqs:
        return set()
    which, arg = one_of(conn, "seq", seqs)
    return {r[0] for r in conn.execute(
        "UPDATE events SET state = 'processed', processed_at = ?, attempts = attempts + 1, error = NULL, "
        f"wait_until = NULL WHERE {which} AND state = 'pending' RETURNING seq", (now, arg))}


def mark_failed(conn: Conn, seq: int, reason: str, now: str) -> None:
    conn.execute("UPDATE events SET state = 'failed', error = ?, attempts = attempts + 1, processed_at = ?, "
                 "wait_until = NULL WHERE seq = ? AND state = 'pending'", (reason, now, seq))


def reprocess(conn: Conn, *, ids: list[str] | None = None, failed: bool = False,
              source: str | None = None) -> int:
    """Put events back to pending: the given ids (any state), or every failed one (optionally of a source)."""
    if ids:
        seqs = [s for s in (parse_id(i) for i in ids) if s is not None]
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        return conn.execute(f"UPDATE events SET state = 'pending', error = NULL, wait_until = NULL "
                            f"WHERE seq IN ({marks})", seqs).rowcount
    if failed:
        sql, args = "UPDATE events SET state = 'pending', error = NULL WHERE state = 'failed'", []
        if source:
            sql, args = sql + " AND source = ?", [source]
        return conn.execute(sql, args).rowcount
    return 0


def failed_count(conn: Conn, source: str | None = None) -> int:
    sql, args = "SELECT count(*) FROM events WHERE state = 'failed'", []
    if source:
        sql, args = sql + " AND source = ?", [source]
    return int(conn.execute(sql, args).fetchone()[0])


def failed_page(conn: Conn, *, source: str | None, after: int, limit: int) -> list[int]:
    """Seqs of the next failed events after ``after``, ascending (a bulk reprocess goes page by page)."""
    sql = "SELECT seq FROM events WHERE state = 'failed' AND seq > ?"
    args: list[Any] = [after]
    if source:
        sql, args = sql + " AND source = ?", [*args, source]
    return [r[0] for r in conn.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit))]


def reprocess_failed(conn: Conn, seqs: list[int]) -> int:
    """Failed events among ``seqs`` back to pending (one still failed: another reprocess may have taken it)."""
    if not seqs:
        return 0
    marks = ",".join("?" * len(seqs))
    return conn.execute(f"UPDATE events SET state = 'pending', error = NULL WHERE seq IN ({marks}) "
                        f"AND state = 'failed'", seqs).rowcount


def by_ids(conn: Conn, ids: list[str]) -> dict[str, EventRow]:
    """Rows (bodies included) keyed by event id."""
    seqs = [s for s in (parse_id(i) for i in ids) if s is not None]
    if not seqs:
        return {}
    marks = ",".join("?" * len(seqs))
    found = [EventRow(*r) for r in conn.execute(f"SELECT {_ROW} FROM events WHERE seq IN ({marks})", seqs)]
    return {r.id: r for r in found}


def source_of(conn: Conn, ident: str) -> str | None:
    seq = parse_id(ident)
    row = conn.execute("SELECT source FROM events WHERE seq = ?", (seq,)).fetchone() if seq else None
    return row[0] if row else None


def counts(conn: Conn) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())
