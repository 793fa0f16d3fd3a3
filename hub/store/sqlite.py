"""The SQLite store: one file in WAL mode, versioned migrations, a group-commit writer.

``SqliteStore`` owns the connections: one writer (used by the group-commit flusher) and one reader for the event
loop; CLI commands use ``write_sync``. Migrations run under an exclusive lock on ``<db>.migrate.lock``, so two
processes opening a new file at once (``hub serve`` and a CLI command) do not both create its tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from sqlite_utils import Database

from hub.errors import StoreError, StoreUnavailableError
from hub.store import events, probe, replays
from hub.store.conn import Conn
from hub.store.probe import touch_probe
from hub.store.schema import migrations
from hub.store.writer import BatchHook, GroupCommitWriter

T = TypeVar("T")
MIN_SQLITE = (3, 35, 0)  # UPDATE .. RETURNING (every delivery claim) and ALTER TABLE .. DROP COLUMN (migration 0005)


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5_000, synchronous: str = "full",
                 max_pending: int = 10_000, on_batch: BatchHook | None = None):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous
        self.max_pending = max_pending
        self.on_batch = on_batch
        self.writer: GroupCommitWriter | None = None
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(f"this Python's SQLite is {sqlite3.sqlite_version}; the store needs "
                             f"{'.'.join(map(str, MIN_SQLITE))} or newer (a Python 3.11+ build from python.org or "
                             "a current distribution has it)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = self.connect()
            self.conn.execute("PRAGMA journal_mode = WAL")
            with migration_lock(self.path):
                migrations.apply(Database(self.conn))
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        return conn

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def pending(self) -> int:
        return self.writer.pending if self.writer is not None else 0

    async def start(self) -> None:
        self.writer = GroupCommitWriter(self.connect(), busy_timeout_ms=self.busy_timeout_ms,
                                        max_pending=self.max_pending, on_batch=self.on_batch)
        self.writer.start()

    async def write(self, fn: Callable[[Conn], T], *, single_statement: bool = False) -> T:
        """Run ``fn`` in the next group commit; returns once it is on disk."""
        if self.writer is None:
            raise StoreUnavailableError("the store writer is not running")
        return await self.writer.submit(fn, single_statement=single_statement)

    def write_sync(self, fn: Callable[[Conn], T]) -> T:
        """One transaction on the calling thread, for the CLI and tests (no event loop needed)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.conn)
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return result

    async def read(self, fn: Callable[[Conn], T]) -> T:
        """Run a long read (a report over every finding) on a connection of its own in a worker thread, so it
        does not hold the event loop, and intake with it, for its duration. WAL: it never blocks a writer."""

        def run() -> T:
            conn = self.connect()
            try:
                return fn(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def peek(self, fn: Callable[[Conn], T]) -> T:
        """A short read on the loop's connection: in-process, microseconds (Store.peek)."""
        return fn(self.conn)

    async def insert_event(self, ev: events.NewEvent, replay: tuple[bytes, float] | None = None,
                           now: float = 0.0) -> tuple[str, bool]:
        """Store an event; with ``replay`` (digest, expiry), one already accepted under that digest and not expired
        at ``now`` is a duplicate (hub/store/replays.py). Returns (event id, was a duplicate)."""
        if replay is None:
            return await self.write(lambda conn: events.insert(conn, ev), single_statement=True)
        return await self.write(lambda conn: replays.insert_event(conn, ev, replay[0], replay[1], now),
                                single_statement=True)  # no savepoint: replays.insert_event says why

    async def ping(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109  (a probe with its own deadline)
        """True if a write that changes a page commits now, through the group commit like every event.

        An empty transaction commits on a full disk (nothing to write), so the probe rewrites a small row with
        a fresh blob: it fails while event writes fail, and passes again once they can succeed."""
        return await probe.ping(self.write, timeout)

    def check_writable(self) -> None:
        """Raise StoreError naming the path unless a write commits now (``hub serve`` calls it before it listens:
        a read-only file or filesystem is one line at start, not a traceback from the first write)."""
        try:
            self.write_sync(touch_probe)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the store at {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
            self.writer.conn.close()
            self.writer = None
        self.conn.close()

    def shutdown(self) -> None:
        """Close without an event loop (a CLI command's store, whose writer never started)."""
        if self.writer is None:
            self.conn.close()



@contextlib.contextmanager
def migration_lock(db: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<db>.migrate.lock`` (released by the kernel however the process ends)."""
    with open(db.with_name(db.name + ".migrate.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
