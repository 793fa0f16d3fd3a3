"""The connection the query modules are written against, whichever engine is behind it.

The query modules are plain functions of a connection: ``fn(conn, ...)``. SQLite hands them its own
``Conn``; PostgreSQL hands them a ``PgConn`` (hub/store/postgres.py) that takes the same SQL:
``?`` and ``:name`` placeholders, rows as tuples, ``rowcount`` on writes. The SQL itself is written once, in the
subset both engines read the same way (``RETURNING``, ``ON CONFLICT``, ``FILTER``, row values, CASE). The few
places where they differ (JSON functions, searching a BLOB, the error-class function) ask ``is_postgres``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What a query function may do with its connection: run a statement, or one statement for many rows."""

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


def is_postgres(conn: Conn) -> bool:
    return getattr(conn, "dialect", "sqlite") == "postgres"
