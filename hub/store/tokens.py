"""``api_tokens`` (hashed; the token itself is shown once) and ``audit_log``."""

from __future__ import annotations

from typing import Any

import orjson

from hub.store._rows import rows as _rows
from hub.store.conn import Conn
from hub.store.dialect import contains


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row["scopes"] = orjson.loads(row["scopes"])
    return row


def insert(conn: Conn, token_id: str, name: str, prefix: str, digest: str, scopes: list[str],
           created_at: str, expires_at: str | None) -> None:
    conn.execute("INSERT INTO api_tokens (id, name, prefix, hash, scopes, created_at, expires_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (token_id, name, prefix, digest, orjson.dumps(scopes).decode(), created_at, expires_at))


def by_id(conn: Conn, token_id: str) -> dict[str, Any] | None:
    rows = _rows(conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)))
    return _decode(rows[0]) if rows else None


def listing(conn: Conn) -> list[dict[str, Any]]:
    return [_decode(r) for r in _rows(conn.execute(
        "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_tokens "
        "ORDER BY created_at"))]


def revoke(conn: Conn, token_id: str, at: str) -> bool:
    return conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        (at, token_id)).rowcount == 1


def touch(conn: Conn, token_id: str, at: str) -> None:
    conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))


def audit(conn: Conn, at: str, actor: str, action: str, target: str | None, result: str,
          detail: dict[str, Any], remote_addr: str | None) -> None:
    conn.execute("INSERT INTO audit_log (at, actor, action, target, result, detail, remote_addr) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (at, actor, action, target, result, orjson.dumps(detail, default=str).decode(), remote_addr))


def audit_listing(conn: Conn, limit: int = 100, actor: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT * FROM audit_log", []
    if actor:
        sql, args = sql + " WHERE actor = ?", [actor]
    rows = _rows(conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)))
    for r in rows:
        r["detail"] = orjson.loads(r["detail"])
    return rows


def audit_page(conn: Conn, actor: str | None, action: str | None, before: int | None,
               limit: int) -> list[dict[str, Any]]:
    """The console's audit list, newest first: ``actor`` matches anywhere in the actor (a token's name or id),
    ``action`` exactly; ``before`` is the last seq of the previous page (keyset: a deep page costs what the first
    does)."""
    where: list[str] = []
    args: list[Any] = []
    if before is not None:
        where, args = ["seq < ?"], [before]
    if actor:
        where, args = [*where, contains(conn, "actor")], [*args, actor]
    if action:
        where, args = [*where, "action = ?"], [*args, action]
    sql = "SELECT * FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
    return _rows(conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)))
