"""PostgreSQL intake on the event loop: the event inserts of a burst in one statement, with psycopg's async API.

Intake is the one write that is always the same statement, and every request waits for it. Run from a writer thread
(hub/store/pg_writer.py), each batch handed the GIL back and forth between the thread and the event loop at every
message of its pipeline; here the batch is awaited on an ``AsyncConnection`` on the loop like any socket, and the
loop serves requests while PostgreSQL works.

The events of a batch are one statement on an autocommit connection: one round trip, one plan and one commit
(``events.stored_rows``; for sources with a replay window ``replays.take_then_insert_rows``, the digests and the
events). BEGIN, a statement per event and COMMIT cost three round trips and a plan per event: at the 4 to 16 events
a batch holds under load, about twice the client's CPU and the server's per event (bench/ingest.py). Each row
carries its ordinal and the answer has one row per ordinal: the event's seq, or NULL when it was not stored (its
idempotency key or its digest was taken). That answer is then read by the same functions the other writes use,
through ``settle`` (the store's ordinary write path), as is the answer of a digest met twice in one batch (one
statement cannot take a digest twice). If a batch fails (a bad row: PostgreSQL's text refuses a NUL; the connection
lost; a deadlock), nothing of it is committed and each event goes through ``settle`` alone, so only the bad one
fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from hub.errors import StoreUnavailableError
from hub.store import events, replays
from hub.store.pg_sql import numbered
from hub.store.queue import BatchQueue
from hub.store.writer import BatchHook

log = logging.getLogger("hub.store")
MAX_BATCH = 512


@dataclass(eq=False, slots=True)
class Insert:
    params: tuple[Any, ...]  # events.params(ev), or replays.taking(...) (the digest first)
    replay: bool  # the event takes a digest of the replay guard
    alone: Callable[[], Awaitable[tuple[str, bool]]]  # the insert through the ordinary write path
    duplicate: Callable[[], Awaitable[tuple[str, bool]]]  # the answer when the statement stored nothing
    future: asyncio.Future[tuple[str, bool]]


class AsyncIntake(BatchQueue[Insert]):
    waiting_for = "the database"

    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]], *, max_pending: int,
                 on_batch: BatchHook | None = None):
        super().__init__(max_batch=MAX_BATCH, max_pending=max_pending, name="hub-pg-intake")
        self.connect, self.on_batch = connect, on_batch
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def submit(self, params: tuple[Any, ...], *, replay: bool, alone: Callable[[], Awaitable[tuple[str, bool]]],
               duplicate: Callable[[], Awaitable[tuple[str, bool]]]) -> asyncio.Future[tuple[str, bool]]:
        """Queue an event's insert; the future gives (event id, was a duplicate)."""
        future: asyncio.Future[tuple[str, bool]] = asyncio.get_running_loop().create_future()
        self.enqueue(Insert(params, replay, alone, duplicate, future))
        return future

    async def close(self) -> None:
        await super().close()
        if self._conn is not None:
            await self._conn.close()

    async def flush(self, batch: list[Insert]) -> None:
        started = asyncio.get_running_loop().time()
        plain: list[Insert] = []
        guarded: list[Insert] = []
        again: list[Insert] = []  # a digest already in this batch: one statement cannot take it twice
        digests: set[bytes] = set()
        for item in batch:
            if not item.replay:
                plain.append(item)
            elif item.params[0] in digests:
                again.append(item)
            else:
                digests.add(item.params[0])
                guarded.append(item)
        if plain:
            await self._insert_or_settle(plain, insert_sql)
        if guarded:
            await self._insert_or_settle(guarded, guarded_sql)
        for item in again:  # its digest's first event is committed now: this one is its replay (or, expired, new)
            self._spawn(item)
        if self.on_batch:
            self.on_batch(len(batch), asyncio.get_running_loop().time() - started)

    async def _insert_or_settle(self, batch: list[Insert], sql: Callable[[int], str]) -> None:
        try:
            seqs = await self._insert(batch, sql(len(batch)))
        except Exception as exc:  # noqa: BLE001  (nothing committed: each goes alone, only a bad one fails)
            log.info("intake batch of %d went one by one: %s", len(batch), str(exc).strip().splitlines()[:1])
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn = None
            await asyncio.gather(*(self._settle(item, item.alone) for item in batch))
            return
        if len(seqs) != len(batch):  # committed, but the answer names no event for some: never insert them again
            log.error("the intake statement answered %d rows for %d events", len(seqs), len(batch))
            error = StoreUnavailableError("the store gave no answer for this event; send it again")
            for item in batch:
                item.future.set_exception(error)
            return
        for item, seq in zip(batch, seqs, strict=True):
            if seq is not None:
                item.future.set_result((events.event_id(seq), False))
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

    async def _insert(self, batch: list[Insert], sql: str) -> list[int | None]:
        """One statement for the batch (autocommit: it commits alone); each item's seq, None if it was not stored."""
        if self._conn is None:
            self._conn = await self.connect()
        cur = psycopg.AsyncRawCursor(self._conn)
        await cur.execute(sql, [value for n, item in enumerate(batch) for value in (n, *item.params)])
        return [row[0] for row in await cur.fetchall()]


@functools.lru_cache(maxsize=MAX_BATCH)
def insert_sql(n: int) -> str:
    return numbered(events.stored_rows(n))


@functools.lru_cache(maxsize=MAX_BATCH)
def guarded_sql(n: int) -> str:
    return numbered(replays.take_then_insert_rows(n))
