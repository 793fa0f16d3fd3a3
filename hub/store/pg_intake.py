"""PostgreSQL intake on the event loop: the event inserts of a burst in one transaction, with psycopg's async API.

Intake is the one write that is always the same statement, and every request waits for it. Run from a writer thread
(hub/store/pg_writer.py), each batch handed the GIL back and forth between the thread and the event loop at every
message of its pipeline; here the batch is an ``executemany`` on an ``AsyncConnection``, awaited on the loop like
any socket, and the loop serves requests while PostgreSQL works.

A batch is one statement per event (``events.insert`` or, for sources with a replay window, the digest and the
event in one statement: ``replays._TAKE_THEN_INSERT``), sent together, committed once. An event that RETURNING
did not give back is a duplicate (of its idempotency key or its digest): its answer is read after the commit, by
the same functions the other writes use, through ``settle`` (the store's ordinary write path). If the batch fails
(a bad row: PostgreSQL's text refuses a NUL; the connection lost; a deadlock), nothing of it is committed and each
event goes through ``settle`` alone, so only the bad one fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from hub.store.queue import BatchQueue
from hub.store.writer import BatchHook

log = logging.getLogger("hub.store")
MAX_BATCH = 512


@dataclass(eq=False, slots=True)
class Insert:
    sql: str  # the statement as psycopg takes it (translated)
    params: tuple[Any, ...]
    alone: Callable[[], Awaitable[tuple[str, bool]]]  # the insert through the ordinary write path
    duplicate: Callable[[], Awaitable[tuple[str, bool]]]  # the answer when RETURNING gave nothing back
    make_id: Callable[[int], str]
    future: asyncio.Future[tuple[str, bool]]


class AsyncIntake(BatchQueue[Insert]):
    waiting_for = "the database"

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]], *, max_pending: int,
                 on_batch: BatchHook | None = None):
        super().__init__(max_batch=MAX_BATCH, max_pending=max_pending, name="hub-pg-intake")
        self.connect, self.on_batch = connect, on_batch
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def submit(self, sql: str, params: tuple[Any, ...], *, alone: Callable[[], Awaitable[tuple[str, bool]]],
               duplicate: Callable[[], Awaitable[tuple[str, bool]]],
               make_id: Callable[[int], str]) -> asyncio.Future[tuple[str, bool]]:
        future: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self.enqueue(Insert(sql, params, alone, duplicate, make_id, future))
        return future

    async def close(self) -> None:
        await super().close()
        if self._conn is not None:
            await self._conn.close()

    async def flush(self, batch: list[Insert]) -> None:
        started = asyncio.get_running_loop().time()
        await self._insert_or_settle(batch)
        if self.on_batch:
            self.on_batch(len(batch), asyncio.get_running_loop().time() - started)

    async def _insert_or_settle(self, batch: list[Insert]) -> None:
        try:
            rows = await self._insert(batch)
        except Exception as exc:  # noqa: BLE001  (nothing committed: each goes alone, only a bad one fails)
            log.info("intake batch of %d went one by one: %s", len(batch), str(exc).strip().splitlines()[:1])
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn = None
            await asyncio.gather(*(self._settle(item, item.alone) for item in batch))
            return
        for item, row in zip(batch, rows, strict=True):
            if row is not None:
                item.future.set_result((item.make_id(row[0]), False))
            else:
                self._spawn(item)

    def _spawn(self, item: Insert) -> None:
        asyncio.get_running_loop().create_task(self._settle(item, item.duplicate))

    @staticmethod
    async def _settle(item: Insert, how: Callable[[], Awaitable[tuple[str, bool]]]) -> None:
        try:
            result = await how()
        except Exception as exc:  # noqa: BLE001  (its caller gets it through its future)
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)

    async def _insert(self, batch: list[Insert]) -> list[Any]:
        if self._conn is None:
            self._conn = await self.connect()
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(item.sql, []).append(i)
        rows: dict[int, Any] = {}
        async with self._conn.transaction():
            for sql, positions in groups.items():
                cur = self._conn.cursor()
                await cur.executemany(sql, [batch[i].params for i in positions], returning=True)
                for n, i in enumerate(positions):
                    rows[i] = await cur.fetchone()
                    if n < len(positions) - 1:
                        cur.nextset()
        return [rows[i] for i in range(len(batch))]
