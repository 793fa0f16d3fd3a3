"""Failure groups and bulk replay jobs (tables ``failure_groups`` and ``replay_jobs``, migration 0009).

A failure group is the failed deliveries of one target with one error class (hub/failures.py): dead letters and
deliveries that failed and wait for a retry. Groups are a query, never stored; what is stored is the operator's
state of a group (open, acknowledged, resolved, ignored), who set it and when. A resolved group whose class fails
again after the resolve time shows as open again (it was not fixed); an ignored or acknowledged one keeps its state.

A bulk replay job replays a filtered set page by page, each page in its own transaction with the job's progress.
Its set is fixed when it is confirmed: rows that match the filter, with a seq at most the largest seq there was
then (``max_seq``), and that had ended (dead or done) by then (``done_by``). A row made later, or one that fails
later, is not in it, whatever the filter says.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any, cast

import orjson

from hub.failures import error_class
from hub.ids import parse_seq
from hub.store import deliveries as delivery_rows
from hub.store._rows import rows as _rows
from hub.store.conn import Conn, is_postgres

GROUP_STATES = ("open", "acknowledged", "resolved", "ignored")
SAMPLES = 3  # distinct reasons shown per group
# A failed delivery. Written exactly as the WHERE of the index deliveries_failed (migration 0011), so SQLite uses it.
_FAILED = "(state = 'dead' OR (state = 'pending' AND attempts > 0 AND last_error IS NOT NULL))"
_LISTED = ("seq, 'dlv_' || seq AS id, route, target, kind, finding_id, event_id, state, attempts, created_at, "
           "next_attempt_at, last_attempt_at, last_status, last_error")


def register(conn: Conn) -> Conn:
    """Give ``conn`` the SQL function ``error_class(status, reason)`` the group queries use (SQLite; on PostgreSQL,
    ``_of_class`` picks the class's rows without it)."""
    if not is_postgres(conn):
        cast(sqlite3.Connection, conn).create_function("error_class", 2, error_class, deterministic=True)
    return conn


def _of_class(conn: Conn, where: str, args: list[Any], cls: str) -> tuple[str, list[Any]]:
    """``where`` narrowed to the rows of error class ``cls``. SQLite calls hub.failures.error_class in the query;
    PostgreSQL cannot run Python, so the distinct (status, reason) pairs of ``where`` are classed here and the rows
    picked by pair: one more query, over an index-narrowed set of distinct reasons."""
    if not is_postgres(conn):
        return f"{where} AND error_class(last_status, last_error) = ?", [*args, cls]
    pairs = [(s if s is not None else -1, e or "") for s, e in conn.execute(
        f"SELECT DISTINCT last_status, last_error FROM deliveries WHERE {where}", args) if error_class(s, e) == cls]
    if not pairs:
        return "1 = 0", []
    values = ", ".join("(?, ?)" for _ in pairs)
    return (f"{where} AND (coalesce(last_status, -1), coalesce(last_error, '')) IN (VALUES {values})",
            [*args, *(v for pair in pairs for v in pair)])


def groups(conn: Conn, target: str | None = None) -> list[dict[str, Any]]:
    """Every group (of ``target``, or of all), the last seen first: target, class, counts (dead, retrying), first and
    last seen (times of the failing attempts), up to SAMPLES reasons, and the state (stored, or open), its actor and
    time. One query over the failed rows by distinct reason, merged here by class, and one over the stored states.
    The failed rows are read from their own index (migration 0011): what a page costs follows them, not the
    outbox (a scan of every delivery was 160 ms at 300,000, bench/console.py)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    only, args = ("target = ? AND ", [target]) if target is not None else ("", [])
    for target, status, reason, dead, total, first, last in conn.execute(
            f"SELECT target, last_status, last_error, count(*) FILTER (WHERE state = 'dead'), count(*), "
            f"min(last_attempt_at), max(last_attempt_at) FROM deliveries WHERE {only}{_FAILED} "
            f"GROUP BY target, last_status, last_error", args):
        key = (target, error_class(status, reason))
        g = out.setdefault(key, {"target": key[0], "class": key[1], "dead": 0, "retrying": 0, "first_seen": first,
                                 "last_seen": last, "samples": []})
        g["dead"] += dead
        g["retrying"] += total - dead
        g["first_seen"] = min(filter(None, (g["first_seen"], first)), default=None)
        g["last_seen"] = max(filter(None, (g["last_seen"], last)), default=None)
        if len(g["samples"]) < SAMPLES and reason:
            g["samples"].append(reason)
    stored = {(r["target"], r["class"]): r for r in _rows(conn.execute("SELECT * FROM failure_groups"))}
    for key, g in out.items():
        g.update(_state(stored.get(key), g["last_seen"]))
    return sorted(out.values(), key=lambda g: (g["last_seen"] or "", g["target"], g["class"]), reverse=True)


def _state(row: Mapping[str, Any] | None, last_seen: str | None) -> dict[str, Any]:
    if row is None:
        return {"state": "open", "actor": None, "changed_at": None, "reopened": False}
    reopened = row["state"] == "resolved" and (last_seen or "") > row["changed_at"]
    return {"state": "open" if reopened else row["state"], "actor": row["actor"], "changed_at": row["changed_at"],
            "reopened": reopened}


def group(conn: Conn, target: str, cls: str) -> dict[str, Any] | None:
    return next((g for g in groups(conn, target) if g["class"] == cls), None)


def set_state(conn: Conn, target: str, cls: str, state: str, actor: str, now: str) -> int:
    conn.execute("INSERT INTO failure_groups (target, class, state, actor, changed_at) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (target, class) DO UPDATE SET state = excluded.state, actor = excluded.actor, "
                 "changed_at = excluded.changed_at", (target, cls, state, actor, now))
    return 1


def members(conn: Conn, target: str, cls: str, before: int | None, limit: int) -> list[dict[str, Any]]:
    """The group's deliveries, newest first; page with ``before`` = the last seq seen. ``conn`` is registered."""
    where, args = _of_class(conn, f"target = ? AND {_FAILED}", [target], cls)
    if before is not None:
        where, args = where + " AND seq < ?", [*args, before]
    return _rows(conn.execute(f"SELECT {_LISTED} FROM deliveries WHERE {where} ORDER BY seq DESC LIMIT ?",
                              (*args, limit)))


# --- bulk replay ----------------------------------------------------------------------------------------------------

FILTER_KEYS = ("target", "state", "finding", "event", "since", "until", "class")


def _selection(conn: Conn, f: Mapping[str, Any], max_seq: int, done_by: str) -> tuple[str, list[Any]]:
    """The WHERE clause of a job's set: ``f`` (state is dead or done; the others optional) within the bounds."""
    where = ["state = ?", "seq <= ?", "done_at <= ?"]
    args: list[Any] = [f["state"], max_seq, done_by]
    for key, clause in (("target", "target = ?"), ("finding", "finding_id = ?"), ("since", "created_at >= ?"),
                        ("until", "created_at < ?")):
        if f.get(key) is not None:
            where.append(clause)
            args.append(f[key])
    if f.get("event") is not None:  # as the deliveries list: its own and those of the finding steps it made
        where.append("(event_id = ? OR (finding_id, created_at) IN "
                     "(SELECT finding_id, at FROM finding_history WHERE event_id = ?))")
        args += [f["event"], f["event"]]
    if f.get("class") is not None:
        return _of_class(conn, " AND ".join(where), args, f["class"])
    return " AND ".join(where), args


def bounds(conn: Conn) -> int:
    """The largest delivery seq now: a job confirmed now replays no row made after it."""
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM deliveries").fetchone()[0])


def count(conn: Conn, f: Mapping[str, Any], max_seq: int, done_by: str) -> int:
    """How many rows a job with this filter and these bounds replays (``conn`` is registered)."""
    where, args = _selection(conn, f, max_seq, done_by)
    return int(conn.execute(f"SELECT count(*) FROM deliveries WHERE {where}", args).fetchone()[0])


def job_id(seq: int) -> str:
    return f"rpl_{seq}"


def parse_job_id(text: str) -> int | None:
    return parse_seq(text, "rpl_")


def create_job(conn: Conn, f: Mapping[str, Any], max_seq: int, done_by: str, actor: str,
               now: str) -> dict[str, Any]:
    """A running job over the set ``f`` and the bounds select now; returns its row."""
    total = count(register(conn), f, max_seq, done_by)
    seq = int(conn.execute("INSERT INTO replay_jobs (created_at, actor, filter, max_seq, done_by, total) "
                           "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                           (now, actor, orjson.dumps(dict(f)).decode(), max_seq, done_by, total)).fetchone()[0])
    return {"id": job_id(seq), "seq": seq, "total": total}


def get_job(conn: Conn, ident: str) -> dict[str, Any] | None:
    seq = parse_job_id(ident)
    found = _rows(conn.execute("SELECT *, 'rpl_' || seq AS id FROM replay_jobs WHERE seq = ?", (seq,))) if seq else []
    if not found:
        return None
    found[0]["filter"] = orjson.loads(found[0]["filter"])
    return found[0]


def cancel_job(conn: Conn, seq: int, now: str) -> int:
    """Stop a running job: the page being replayed finishes, no other starts. Returns 1, or 0 if it had ended."""
    return conn.execute("UPDATE replay_jobs SET state = 'cancelled', finished_at = ? WHERE seq = ? "
                        "AND state = 'running'", (now, seq)).rowcount


def step(conn: Conn, seq: int, page: int, now: str) -> str:
    """Replay the job's next page (at most ``page`` rows of its set past its cursor) and record how far it got, in
    one transaction; a job with nothing left is done. Returns the job's state after the step."""
    lock = " FOR UPDATE" if is_postgres(conn) else ""  # SQLite's write transaction is exclusive already
    job = conn.execute(f"SELECT state, filter, max_seq, done_by, after FROM replay_jobs WHERE seq = ?{lock}",
                       (seq,)).fetchone()
    if job is None or job[0] != "running":
        return str(job[0]) if job else "done"
    where, args = _selection(register(conn), orjson.loads(job[1]), job[2], job[3])
    seqs = [r[0] for r in register(conn).execute(
        f"SELECT seq FROM deliveries WHERE {where} AND seq > ? ORDER BY seq LIMIT ?", (*args, job[4], page))]
    if not seqs:
        conn.execute("UPDATE replay_jobs SET state = 'done', finished_at = ? WHERE seq = ?", (now, seq))
        return "done"
    replayed = delivery_rows.replay(conn, seqs, now)
    conn.execute("UPDATE replay_jobs SET replayed = replayed + ?, after = ? WHERE seq = ?", (replayed, seqs[-1], seq))
    return "running"
