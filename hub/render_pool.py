"""Render SIEM batches in a child process, so the event loop's core only moves rows and bytes.

Rendering a mapping costs a SIEM event about half of what the hub spends on it, all on the event loop's
core while the machine's other core idles. Connectors that are ``SupportsEncode`` (their ``deliver_batch``
reads an item only through ``encode()``) can have their items encoded here instead: the child gets the
stored rows (snapshot JSON, raw event rows) and returns each item's bytes, or its template error.

The pool starts on the first batch big enough to be worth the trip (``MIN_ROWS``) and warms up in the
background; batches are encoded in the loop until it answers. If the child dies, the batch it had is
encoded in the loop and the pool is started again on a later batch: a broken child never loses or
delays a delivery beyond that one batch's render.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from hub.connector import Connector, SupportsEncode, TargetConfig, Verdict
from hub.connector.batching import encode_one
from hub.items import item_from
from hub.mappings import Mapping
from hub.store.deliveries import ClaimedDelivery
from hub.store.events import EventRow

log = logging.getLogger("hub.render")
MIN_ROWS = 100  # below this, pickling both ways costs more than it frees
RESTART_AFTER = 30.0  # seconds before a pool that broke is started again


@dataclass(frozen=True)
class Spec:
    """What the child needs to build one target's connector (the target's config, mapping and base folder)."""

    config: TargetConfig
    mapping: Mapping
    base_dir: Path


Row = tuple[ClaimedDelivery, EventRow | None]  # a claimed delivery, and the stored event a raw delivery reads
Encoded = bytes | Verdict  # an item's bytes, or its own verdict (its template failed)


def encode_rows(connector: Connector, rows: list[Row]) -> list[Encoded]:
    """Each row's bytes, as the loop would encode its Item (``hub.items.item_from``, the same function)."""
    if not isinstance(connector, SupportsEncode):
        raise TypeError(f"{type(connector).__name__} does not encode items apart from delivering them")
    return [encode_one(item_from(connector.target, row, event), connector.encode) for row, event in rows]


_connectors: dict[str, Connector] = {}  # the child's, built once by _start


def _start(specs: dict[str, Spec], hub_pid: int) -> None:
    from hub.registry import connector_class

    threading.Thread(target=_exit_with_parent, args=(hub_pid,), name="hub-render-watchdog", daemon=True).start()
    for name, spec in specs.items():
        _connectors[name] = connector_class(spec.config.type)(name, spec.config, spec.mapping, spec.base_dir)


def _exit_with_parent(parent: int) -> None:
    """A hub killed with SIGKILL cannot stop its child: the child sees it is orphaned (even before it got here)
    and ends itself."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _encode(target: str, rows: list[Row]) -> list[Encoded]:
    return encode_rows(_connectors[target], rows)


def _ready() -> int:
    return os.getpid()


class RenderPool:
    """One child process that encodes the batches of the targets in ``specs``."""

    def __init__(self, specs: dict[str, Spec]):
        self.specs = specs
        self._pool: ProcessPoolExecutor | None = None
        self._warm: asyncio.Future[int] | None = None
        self._broken_at = 0.0
        self.pid: int | None = None  # the child's, once it answered

    @property
    def ready(self) -> bool:
        return self._warm is not None and self._warm.done() and not self._warm.exception()

    def wants(self, target: str, rows: int) -> bool:
        """Encode this batch in the child? Starts the pool on the first big batch (that one renders in the loop)."""
        if target not in self.specs or rows < MIN_ROWS:
            return False
        if self._pool is None and time.monotonic() - self._broken_at >= RESTART_AFTER:
            self._launch()
        return self.ready

    async def start(self) -> bool:
        """Start the child now (rather than on the first big batch) and wait until it answers; False if it failed."""
        if self._pool is None:
            self._launch()
        if self._warm is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._warm)
        return self.ready

    def _launch(self) -> None:
        try:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                             initargs=(self.specs, os.getpid()))
            self._warm = asyncio.wrap_future(self._pool.submit(_ready))
        except Exception as exc:  # noqa: BLE001  (e.g. no processes left: render in the loop, try again later)
            self._broke(exc)
            return
        self._warm.add_done_callback(self._warmed)

    def _warmed(self, future: asyncio.Future[int]) -> None:
        if future is not self._warm:
            return  # a pool already given up on (closed, or replaced after it broke)
        if future.cancelled() or future.exception() is not None:
            self._broke(future.exception() if not future.cancelled() else None)
        else:
            self.pid = future.result()
            log.info("render process %d started for %s", self.pid, ", ".join(self.specs))

    async def encode(self, target: str, rows: list[Row]) -> list[Encoded] | None:
        """Each row's bytes or its verdict (template error), from the child; None if the child is gone (encode in the
        loop)."""
        pool = self._pool
        if pool is None:
            return None
        try:
            return await asyncio.wrap_future(pool.submit(_encode, target, rows))
        except BrokenProcessPool as exc:
            if self._pool is pool:
                self._broke(exc)
            return None

    def _broke(self, exc: BaseException | None) -> None:
        log.warning("render process failed (%s); rendering in the hub process, restart in %.0f s",
                    exc or "cancelled", RESTART_AFTER)
        pool, self._pool, self._warm, self._broken_at = self._pool, None, None, time.monotonic()
        self.pid = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        pool, self._pool, self._warm = self._pool, None, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
