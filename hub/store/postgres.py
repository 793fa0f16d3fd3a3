"""The PostgreSQL store: several hub processes on one database.

Same contract as the SQLite store (hub/store/sqlite.py): ``write(fn)`` runs ``fn(conn)`` in a transaction and
returns once it is committed; ``read(fn)`` runs a long read off the event loop; ``conn`` serves the short reads
the API and the console make on the loop. The query modules are the same functions: ``PgConn`` takes their SQL
(``?`` and ``:name`` placeholders, ``LIKE`` without case, as SQLite reads them) and hands it to psycopg.

Writes go through a group commit once the store is started (hub/store/pg_writer.py: many writes, one
transaction, one WAL flush), on a connection of the pool (psycopg 3 with psycopg_pool) held by a writer thread:
the query functions are synchronous units of work, as they are for SQLite. Before ``start`` (the CLI), and for
``write_sync``, a write is a transaction of its own on a pooled connection (a single-statement one in autocommit),
retried on a deadlock or a serialization failure, which PostgreSQL reports instead of blocking when two processes'
transactions cross. Long reads (``read``) run on pooled connections in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from hub.errors import StoreError, StoreUnavailableError
from hub.store import events, pg_schema, probe, replays
from hub.store.conn import Conn
from hub.store.pg_intake import AsyncIntake
from hub.store.pg_sql import translate
from hub.store.pg_writer import PgGroupWriter
from hub.store.probe import touch_probe
from hub.store.writer import BatchHook

T = TypeVar("T")
log = logging.getLogger("hub.store")
RETRIES = 4  # a transaction that met a deadlock or a serialization failure runs again, up to this many times
class PgConn:
    """A psycopg connection that takes the query modules' SQL (see ``translate``)."""

    dialect = "postgres"

    def __init__(self, raw: psycopg.Connection[Any]):
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = (), /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.execute(translate(sql), parameters if isinstance(parameters, dict) else tuple(parameters))
        return cur

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        rows = [tuple(p) for p in parameters]
        if rows:
            cur.executemany(translate(sql), rows)
        return cur


class _LoopConn(PgConn):
    """The connection for the short reads made on the event loop (autocommit: no transaction is left open
    between them). A connection the server ended (a restart, a failover) is opened again and the read retried once;
    only reads use it, so a retry repeats nothing."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]):
        self._connect = connect
        super().__init__(connect())

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = (), /) -> psycopg.Cursor[Any]:
        for attempt in (1, 2):
            try:
                if self.raw.broken or self.raw.closed:
                    self.raw = self._connect()
                return super().execute(sql, parameters)
            except psycopg.OperationalError as exc:
                if attempt == 2 or not self.raw.broken:  # a session the server ended while idle: once more, anew
                    raise StoreUnavailableError(f"the store cannot be read: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")


QUEUE_TABLES = ("events", "deliveries")  # rewritten at every step; their plans need fresh statistics
STALE_ROWS = 1_000  # and a tenth of the table: what ``refresh_statistics`` calls stale


def refresh_statistics(conn: Conn) -> list[str]:
    """ANALYZE the queue tables whose statistics are stale; returns their names. Autovacuum does it too, but at
    most once a minute and after a fifth of the table changed: a backlog written at once (an outage's, a restore)
    was claimed for that minute with a plan made for an empty table, reading the whole queue per claim (100 ms
    against 0.5 ms at 20,000 pending)."""
    stale = [r[0] for r in conn.execute(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(?) "
        "AND n_mod_since_analyze > greatest(?, n_live_tup / 10)", (list(QUEUE_TABLES), STALE_ROWS))]
    for table in stale:
        conn.execute(f"ANALYZE {table}")
    return stale


DEAD_ROWS = 10_000  # and a fifth of the table: what ``vacuum_dead`` calls piled up
VACUUM_SECS = 300  # unless something vacuumed the table this recently


def vacuum_dead(conn: Conn) -> list[str]:
    """VACUUM (and analyze) the queue tables whose dead rows piled up and that nothing vacuumed in the last five
    minutes; returns their names. Every step of an event or a delivery leaves a dead row version behind, and the
    pending reads and claims walk past them in the indexes until a vacuum removes them. Autovacuum does this where it
    is on; where it is off (this project's CI machines have it off) or falls behind, the leader does. Runs outside a
    transaction (``Store.peek``), as VACUUM must."""
    piled = [r[0] for r in conn.execute(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(?) "
        "AND n_dead_tup > greatest(?, n_live_tup / 5) AND coalesce(greatest(last_vacuum, last_autovacuum), "
        "'-infinity') < now() - make_interval(secs => ?)", (list(QUEUE_TABLES), DEAD_ROWS, VACUUM_SECS))]
    for table in piled:
        log.info("vacuuming %s: its dead rows piled up and nothing vacuumed it in %d s", table, VACUUM_SECS)
        conn.execute(f"VACUUM (ANALYZE) {table}")
    return piled


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresStore:
    dialect = "postgres"

    def __init__(self, url: str, *, pool_size: int = 8, max_pending: int = 10_000, on_batch: BatchHook | None = None,
                 connect_timeout: float = 5.0, migrate: bool = True):
        self.url = url
        self.location = redact_url(url)
        self.max_pending = max_pending
        self.on_batch = on_batch
        self._pending = 0
        self._closed = False
        self.writer: PgGroupWriter | None = None
        self.intake: AsyncIntake | None = None
        self._kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(connect_timeout))}
        try:
            if migrate:
                with psycopg.connect(url, **self._kwargs) as conn:
                    pg_schema.apply(conn)
            self.conn = _LoopConn(self._connect)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the store at {self.location}: {_first_line(exc)}") from None
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=self._kwargs, open=True,
                                   name="hub-store", timeout=connect_timeout + 5)
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="hub-pg")

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, **self._kwargs)

    async def _connect_async(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.url, **self._kwargs)

    @property
    def pending(self) -> int:
        if self.writer is None or self.intake is None:
            return self._pending
        return self.writer.pending + self.intake.pending

    async def start(self) -> None:
        """Start the group commits (hub/store/pg_writer.py): one for intake, one for everything else. The event
        inserts of intake wait for nothing but each other: a batch of the pipeline's writes is many round trips
        (its statements, its savepoints), and a request whose insert shared it waited for all of them (18 ms p50).
        Nothing orders an insert against the other writes: those read committed events only."""
        self.writer = PgGroupWriter(self.pool, PgConn, max_pending=self.max_pending, on_batch=self.on_batch)
        self.intake = AsyncIntake(self._connect_async, max_pending=self.max_pending, on_batch=self.on_batch)
        self.writer.start()
        self.intake.start()

    async def write(self, fn: Callable[[Conn], T], *, single_statement: bool = False) -> T:
        """Run ``fn`` in the next group commit (once started; before, in a transaction of its own on a pooled
        connection); returns once it is committed."""
        if self.writer is not None and not self._closed:
            return await self.writer.submit(fn, single_statement=single_statement)
        if self._closed:
            raise StoreUnavailableError("the store is not accepting writes")
        if self._pending >= self.max_pending:
            raise StoreUnavailableError(f"{self._pending} writes are waiting for the database")
        self._pending += 1
        started = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._threads, self._run, fn, single_statement)
        finally:
            self._pending -= 1
        if self.on_batch:
            self.on_batch(1, time.perf_counter() - started)
        return result

    def write_sync(self, fn: Callable[[Conn], T]) -> T:
        """One transaction on the calling thread, for the CLI and tests."""
        return self._run(fn, False)

    async def read(self, fn: Callable[[Conn], T]) -> T:
        """A long read on a pooled connection in a worker thread, in one transaction (one snapshot)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._run, fn, False)

    async def peek(self, fn: Callable[[Conn], T]) -> T:
        """A short read on a pooled connection in a worker thread, in autocommit (Store.peek): the pipeline's
        round of pending events is half a megabyte of bodies, which held the event loop, and every request, for
        as long as it took to arrive."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._run, fn, True)

    def _run(self, fn: Callable[[Conn], T], single_statement: bool) -> T:
        for attempt in range(1, RETRIES + 1):
            try:
                with self.pool.connection() as raw:
                    if single_statement:
                        return fn(PgConn(raw))
                    with raw.transaction():
                        return fn(PgConn(raw))
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES:
                    raise StoreUnavailableError(f"the store cannot commit: {_first_line(exc)}") from exc
                log.info("transaction retried after %s", type(exc).__name__)
                time.sleep(0.005 * attempt)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise StoreUnavailableError(f"the store cannot commit: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    async def insert_event(self, ev: events.NewEvent, replay: tuple[bytes, float] | None = None,
                           now: float = 0.0) -> tuple[str, bool]:
        """As SqliteStore.insert_event. With a replay digest this is a transaction of several statements: the
        digest's row is the lock that makes two processes given the same request agree on one event."""
        if self.intake is None or self._closed:
            if replay is None:
                return await self.write(lambda conn: events.insert(conn, ev), single_statement=True)
            return await self.write(lambda conn: replays.insert_event(conn, ev, replay[0], replay[1], now))
        if replay is None:  # a row of the moment's statement: one round trip and one commit for all (pg_intake.py)

            async def again() -> tuple[str, bool]:
                return await self.write(lambda conn: events.insert(conn, ev), single_statement=True)

            return await self.intake.submit(events.params(ev), replay=False, alone=again, duplicate=again)
        key, expires = replay

        async def alone() -> tuple[str, bool]:
            return await self.write(lambda conn: replays.insert_event(conn, ev, key, expires, now))

        async def duplicate() -> tuple[str, bool]:
            return await self.write(lambda conn: replays.settled(conn, ev, key, None))

        return await self.intake.submit(replays.taking(ev, key, expires, now), replay=True, alone=alone,
                                        duplicate=duplicate)

    async def ping(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109  (a probe with its own deadline)
        return await probe.ping(self.write, timeout)

    def check_writable(self) -> None:
        try:
            self.write_sync(touch_probe)
        except (psycopg.Error, StoreError) as exc:
            raise StoreError(f"cannot write the store at {self.location}: {_first_line(exc)}") from None

    async def close(self) -> None:
        for writer in (self.intake, self.writer):
            if writer is not None:
                await writer.close()
        self.writer = self.intake = None
        self.shutdown()

    def shutdown(self) -> None:
        """Close without an event loop: finish the writes running, then the pool and the loop's connection."""
        if self._closed:
            return
        self._closed = True
        self._threads.shutdown(wait=True)
        self.pool.close()
        self.conn.raw.close()
