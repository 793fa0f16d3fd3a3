"""Group commit: one writer connection, many concurrent writes sharing one transaction and one fsync.

Writes are jobs, ``fn(conn) -> result``. Jobs queue in the event loop; a flusher takes everything queued,
runs it inside one ``BEGIN IMMEDIATE`` transaction on the loop (statements are microseconds), then
awaits ``COMMIT`` on a dedicated thread so the fsync never blocks the loop. A job's future resolves only
after the commit returned: a caller told "done" is on disk. While one commit runs, new jobs gather
into the next batch; that is where the speed comes from.

Each multi-statement job runs under its own SAVEPOINT, so a failing job rolls back alone. If the
commit fails, or SQLite destroyed the transaction, every job of the batch fails with
StoreUnavailableError and nothing of it is on disk. If another process holds the write lock, the whole
batch moves to the writer thread, where waiting (``busy_timeout``) does not stall the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hub.errors import StoreUnavailableError
from hub.store.conn import Conn
from hub.store.queue import BatchQueue

T = TypeVar("T")
log = logging.getLogger("hub.store")


@dataclass(eq=False)
class Job(Generic[T]):
    fn: Callable[[Conn], T]
    future: asyncio.Future[T]
    single_statement: bool = False  # one statement is atomic on its own: no savepoint needed
    error: BaseException | None = field(default=None, init=False)
    result: Any = field(default=None, init=False)


BatchHook = Callable[[int, float], None]  # (batch size, commit seconds)


def submit_job(queue: BatchQueue[Job[Any]], fn: Callable[[Conn], T], single_statement: bool) -> asyncio.Future[T]:
    """Queue a write on a group commit of jobs; the future resolves after the commit that includes it."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    queue.enqueue(Job(fn, future, single_statement))
    return future


def settle(batch: list[Job[Any]]) -> None:
    """Each job's future: its result, or its error."""
    for job in batch:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


class GroupCommitWriter(BatchQueue[Job[Any]]):
    waiting_for = "the disk"

    def __init__(self, conn: sqlite3.Connection, *, busy_timeout_ms: int, max_batch: int = 1024,
                 max_pending: int = 10_000, on_batch: BatchHook | None = None):
        super().__init__(max_batch=max_batch, max_pending=max_pending, name="hub-group-commit")
        self.conn = conn
        self.busy_timeout_ms = busy_timeout_ms
        self.on_batch = on_batch
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-commit")
        conn.execute("PRAGMA busy_timeout = 0")  # the loop never waits for a lock; see _commit_blocking

    def submit(self, fn: Callable[[Conn], T], *, single_statement: bool = False) -> asyncio.Future[T]:
        return submit_job(self, fn, single_statement)

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        await super().close()
        self._thread.shutdown(wait=True)

    async def flush(self, batch: list[Job[Any]]) -> None:
        try:
            await self._commit(batch)
        except Exception as exc:  # never let the flusher die: fail the batch instead
            log.exception("group commit failed")
            self._fail(batch, StoreUnavailableError(f"store error: {exc}"))
        settle(batch)

    async def _commit(self, batch: list[Job[Any]]) -> None:
        started = time.perf_counter()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                await asyncio.get_running_loop().run_in_executor(self._thread, self._commit_blocking, batch)
            else:
                self._fail(batch, _unavailable(exc))
            return
        self._run_jobs(batch)
        if not self.conn.in_transaction:  # SQLite rolled the whole transaction back (I/O error, full disk)
            self._fail(batch, StoreUnavailableError("the store rolled the transaction back"))
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._finish)
        except sqlite3.Error as exc:
            self._fail(batch, _unavailable(exc))
            return
        if self.on_batch:
            self.on_batch(len(batch), time.perf_counter() - started)

    def _finish(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _commit_blocking(self, batch: list[Job[Any]]) -> None:
        """Slow path on the writer thread: another process holds the lock, so wait for it here."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            self._run_jobs(batch)
            if not self.conn.in_transaction:
                raise sqlite3.OperationalError("the transaction was rolled back")
            self._finish()
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._fail(batch, _unavailable(exc))
        finally:
            self.conn.execute("PRAGMA busy_timeout = 0")

    def _run_jobs(self, batch: list[Job[Any]]) -> None:
        """Run each job; stop at once if SQLite ended the transaction (the next statement would autocommit)."""
        conn = self.conn
        for job in batch:
            if job.single_statement:
                try:
                    job.result = job.fn(conn)
                except Exception as exc:  # noqa: BLE001  (the job's caller gets its exception through its future)
                    job.error = _unavailable(exc) if isinstance(exc, sqlite3.OperationalError) else exc
            else:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                except Exception as exc:  # noqa: BLE001  (the job's caller gets its exception through its future)
                    job.error = _unavailable(exc) if isinstance(exc, sqlite3.OperationalError) else exc
                    if conn.in_transaction:
                        conn.execute("ROLLBACK TO job")
                if conn.in_transaction:
                    conn.execute("RELEASE job")
            if not conn.in_transaction:
                return

    def _fail(self, batch: list[Job[Any]], error: StoreUnavailableError) -> None:
        log.error("store could not commit %d write(s): %s", len(batch), error)
        for job in batch:
            job.error, job.result = error, None


def _unavailable(exc: sqlite3.Error) -> StoreUnavailableError:
    return StoreUnavailableError(f"the store cannot commit: {exc}")
