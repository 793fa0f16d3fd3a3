"""The store: what the hub keeps (events, findings, deliveries, tokens, the audit log), on SQLite or PostgreSQL.

This package is the only place that writes SQL. The query modules (``events``, ``findings``, ``deliveries``, ...)
are functions of a connection (hub/store/conn.py); ``Store`` is what the rest of the hub holds: it runs them in a
transaction (``write``), off the event loop (``read``), or as short reads on the loop (``conn``).
``open_store`` picks the engine from the config: a ``postgresql://`` URL, or a SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from hub.store import events
from hub.store.conn import Conn
from hub.store.sqlite import SqliteStore
from hub.store.writer import BatchHook

T = TypeVar("T")
__all__ = ["Conn", "SqliteStore", "Store", "events", "is_url", "open_store"]


class Store(Protocol):
    """The store's interface; SqliteStore (hub/store/sqlite.py) and PostgresStore (hub/store/postgres.py)."""

    dialect: str

    @property
    def conn(self) -> Conn: ...

    @property
    def location(self) -> str:
        """Where the store is, for logs and errors: a path, or the URL without its password."""

    @property
    def pending(self) -> int:
        """Writes waiting to be committed."""

    async def start(self) -> None: ...

    async def write(self, fn: Callable[[Conn], T], *, single_statement: bool = False) -> T: ...

    def write_sync(self, fn: Callable[[Conn], T]) -> T: ...

    async def read(self, fn: Callable[[Conn], T]) -> T: ...

    async def peek(self, fn: Callable[[Conn], T]) -> T:
        """A short read the event loop waits for: on SQLite on the loop's own connection (microseconds), on
        PostgreSQL on a pooled connection in a worker thread (a network round trip must not hold the loop)."""

    async def insert_event(self, ev: events.NewEvent, replay: tuple[bytes, float] | None = None,
                           now: float = 0.0) -> tuple[str, bool]: ...

    async def ping(self, timeout: float = 2.0) -> bool: ...  # noqa: ASYNC109

    def check_writable(self) -> None: ...

    async def close(self) -> None: ...

    def shutdown(self) -> None:
        """Close from synchronous code (the CLI), once nothing runs on the store; closing twice is harmless."""


def is_url(where: str | Path) -> bool:
    return str(where).startswith(("postgresql://", "postgres://"))


def open_store(where: str | Path, *, busy_timeout_ms: int = 5_000, synchronous: str = "full",
               max_pending: int = 10_000, on_batch: BatchHook | None = None, pool_size: int = 8,
               migrate: bool = True) -> Store:
    """The store at ``where``: a PostgreSQL URL, or a SQLite file's path."""
    if is_url(where):
        from hub.store.postgres import PostgresStore  # psycopg is loaded only by hubs that use it

        return PostgresStore(str(where), pool_size=pool_size, max_pending=max_pending, on_batch=on_batch,
                             migrate=migrate)
    return SqliteStore(where, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous, max_pending=max_pending,
                       on_batch=on_batch)
