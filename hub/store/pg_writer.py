"""Group commit on PostgreSQL: many concurrent writes of one process in one transaction, one WAL flush.

A write per transaction cost a thread hand-off, a pooled connection, a round trip for each of BEGIN, the
statements and COMMIT, and a WAL flush: 3,800 event inserts a second at most on this machine, against 16,000 for
SQLite's group commit. As in hub/store/writer.py, jobs queue on the event loop and a flusher takes all that is
queued; here the whole batch (its statements are network round trips) runs on a writer thread, on one connection,
in one transaction. While one batch commits, the next gathers. Intake's inserts have their own, on the event loop
(hub/store/pg_intake.py).

A statement that fails aborts a PostgreSQL transaction (SQLite's does not), and a job that raises halfway leaves
half its writes in it. A batch runs first without savepoints (each costs two round trips, and most batches have
no failure): if a job fails, the transaction is rolled back and the batch runs again with a savepoint around every
job, so only the failing job fails (a single-statement job that raises without touching the transaction just
fails). A deadlock or a serialization failure (two processes' batches crossing) rolls the batch back
and runs it again; it was all rolled back, so nothing runs twice. A failed COMMIT, or a connection lost, fails
every job of the batch with StoreUnavailableError: nothing of it is committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

from hub.errors import StoreUnavailableError
from hub.store.conn import Conn
from hub.store.queue import BatchQueue
from hub.store.writer import BatchHook, Job, settle, submit_job

T = TypeVar("T")

log = logging.getLogger("hub.store")
RETRIES = 4  # a batch that met a deadlock or a serialization failure runs again, up to this many times


class PgGroupWriter(BatchQueue[Job[Any]]):
    waiting_for = "the database"

    def __init__(self, pool: ConnectionPool, wrap: Callable[[psycopg.Connection[Any]], Conn], *,
                 max_batch: int = 512, max_pending: int = 10_000, on_batch: BatchHook | None = None):
        super().__init__(max_batch=max_batch, max_pending=max_pending, name="hub-pg-group-commit")
        self.pool, self.wrap, self.on_batch = pool, wrap, on_batch
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-pg-commit")

    def submit(self, fn: Callable[[Conn], T], *, single_statement: bool = False) -> asyncio.Future[T]:
        return submit_job(self, fn, single_statement)

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        await super().close()
        self._thread.shutdown(wait=True)

    async def flush(self, batch: list[Job[Any]]) -> None:
        started = time.perf_counter()
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self.commit, batch)
        except Exception as exc:  # never let the flusher die: fail the batch instead
            log.exception("group commit failed")
            _fail(batch, StoreUnavailableError(f"store error: {exc}"))
        if self.on_batch:
            self.on_batch(len(batch), time.perf_counter() - started)
        settle(batch)

    def commit(self, batch: list[Job[Any]]) -> None:
        """Run and commit ``batch`` (on the writer thread; also the tests' way in): each job ends with a result or
        an error."""
        careful = False
        for attempt in range(1, RETRIES + 1):
            try:
                with self.pool.connection() as raw:
                    if self._attempt(raw, batch, careful):
                        return
                careful = True  # a single-statement job failed and took the transaction with it
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES:
                    _fail(batch, StoreUnavailableError(f"the store cannot commit: {_line(exc)}"))
                    return
                log.info("group commit retried after %s", type(exc).__name__)
                time.sleep(0.005 * attempt)
            except (psycopg.Error, PoolTimeout) as exc:
                _fail(batch, StoreUnavailableError(f"the store cannot commit: {_line(exc)}"))
                return
        _fail(batch, StoreUnavailableError("the store cannot commit: the batch kept failing"))

    def _attempt(self, raw: psycopg.Connection[Any], batch: list[Job[Any]], careful: bool) -> bool:
        """One transaction over the batch; False when a job without a savepoint aborted it (nothing committed)."""
        conn = self.wrap(raw)
        try:
            self._jobs(raw, conn, batch, careful)
        except _Redo:
            return False
        return True

    @staticmethod
    def _jobs(raw: psycopg.Connection[Any], conn: Conn, batch: list[Job[Any]], careful: bool) -> None:
        with raw.transaction():
            for job in batch:
                job.error, job.result = None, None
                if job.single_statement and not careful:
                    try:
                        job.result = job.fn(conn)
                    except Exception as exc:  # noqa: BLE001  (its caller gets it through its future)
                        job.error = _unavailable(exc)
                    if raw.info.transaction_status == pq.TransactionStatus.INERROR:
                        raise _Redo
                    continue
                if not careful:  # no savepoint (two round trips a job): any failure runs the batch again carefully
                    try:
                        job.result = job.fn(conn)
                    except Exception as exc:
                        _unavailable(exc)  # a deadlock goes up as itself: the batch runs again as it was
                        raise _Redo from exc
                    continue
                try:
                    with raw.transaction():  # a savepoint: a failing job rolls back alone
                        job.result = job.fn(conn)
                except Exception as exc:  # noqa: BLE001
                    job.error = _unavailable(exc)


class _Redo(Exception):
    """A job failed and the transaction holds part of it (or PostgreSQL aborted it): run the batch again, every job
    under a savepoint, so that only the failing one fails."""


def _unavailable(exc: Exception) -> Exception:
    if isinstance(exc, (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)):
        raise exc  # the whole batch runs again
    return StoreUnavailableError(f"the store cannot commit: {_line(exc)}") if isinstance(
        exc, psycopg.OperationalError) else exc


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _fail(batch: list[Job[Any]], error: StoreUnavailableError) -> None:
    log.error("store could not commit %d write(s): %s", len(batch), error)
    for job in batch:
        job.error, job.result = error, None
