"""What the group commits share: writes queue on the event loop, and one flusher hands all that is queued to the
engine's ``flush`` as one batch, while the next gathers. SQLite's writer (writer.py), PostgreSQL's (pg_writer.py)
and PostgreSQL's intake (pg_intake.py) differ only in how a batch reaches the disk."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from hub.errors import StoreUnavailableError

I = TypeVar("I")  # noqa: E741  (an item of the queue)


class BatchQueue(Generic[I]):
    waiting_for = "the store"  # said in the refusal when the queue is full

    def __init__(self, *, max_batch: int, max_pending: int, name: str):
        self.max_batch, self.max_pending, self.name = max_batch, max_pending, name
        self._queue: deque[I] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, item: I) -> None:
        """Queue ``item`` for the next batch; StoreUnavailableError when closing, not started or full."""
        if self._closing or self._task is None:
            raise StoreUnavailableError("the store is not accepting writes")
        if len(self._queue) >= self.max_pending:
            raise StoreUnavailableError(f"{len(self._queue)} writes are waiting for {self.waiting_for}")
        self._queue.append(item)
        self._wake.set()

    async def close(self) -> None:
        """Flush what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def flush(self, batch: list[I]) -> None:
        """Write ``batch`` and settle every item of it; must not raise (the flusher lives as long as the store)."""
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self.flush([self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))])
            if self._closing:
                return
