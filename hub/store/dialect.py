"""The SQL fragments SQLite and PostgreSQL spell differently, for the few queries that need them.

JSON columns are text in both engines (written by the hub, read back whole); these read inside them.
"""

from __future__ import annotations

from typing import Any

import orjson

from hub.store.conn import Conn, is_postgres


def json_text(conn: Conn, expr: str, key: str) -> str:
    """The value at top-level ``key`` of the JSON text ``expr`` (SQLite keeps a number a number; compare as text)."""
    return f"({expr}::jsonb ->> '{key}')" if is_postgres(conn) else f"json_extract({expr}, '$.{key}')"


def json_items(conn: Conn, expr: str, key: str | None = None) -> str:
    """A FROM item with one row per element of the JSON array at ``key`` of ``expr`` (``expr`` itself when None),
    in a column named ``value``; none when it is missing or not an array."""
    if is_postgres(conn):
        inner = f"{expr}::jsonb" + (f" -> '{key}'" if key else "")
        return f"jsonb_array_elements_text(CASE WHEN jsonb_typeof({inner}) = 'array' THEN {inner} END) AS j(value)"
    return f"json_each({expr}, '$.{key}')" if key else f"json_each({expr})"


def contains(conn: Conn, expr: str) -> str:
    """True when the text (or BLOB, with a bytes argument) ``expr`` contains the next argument."""
    return f"strpos({expr}, ?) > 0" if is_postgres(conn) else f"instr({expr}, ?) > 0"


def join_text(conn: Conn, expr: str, sep: str) -> str:
    """An aggregate joining ``expr`` with ``sep`` (a literal without quotes)."""
    return f"string_agg({expr}, '{sep}')" if is_postgres(conn) else f"group_concat({expr}, '{sep}')"


def seconds_between(conn: Conn, start: str, end: str) -> str:
    """Seconds from the ISO time ``start`` to ``end`` (both hub.ids.iso text)."""
    if is_postgres(conn):
        return f"extract(epoch FROM ({end}::timestamptz - {start}::timestamptz))::float8"
    return f"(julianday({end}) - julianday({start})) * 86400.0"


def one_of(conn: Conn, column: str, values: list[Any]) -> tuple[str, Any]:
    """``column`` is one of ``values``, as one placeholder: the same statement text whatever their number (a prepared
    statement's cache holds one plan, not one per count). Returns the fragment and its argument."""
    if is_postgres(conn):
        return f"{column} = ANY(?)", list(values)
    return f"{column} IN (SELECT value FROM json_each(?))", orjson.dumps(list(values)).decode()
