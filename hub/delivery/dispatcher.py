"""The workers together: one per target, started and closed at once; lease checks; wake-ups by target."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import httpx

from hub.connector import Connector, SupportsEncode
from hub.delivery.verdicts import RouteDead
from hub.delivery.worker import Worker
from hub.ids import iso
from hub.metrics import Metrics
from hub.render_pool import RenderPool, Spec
from hub.store import Store
from hub.store import deliveries as outbox

log = logging.getLogger("hub.delivery")


class Dispatcher:
    def __init__(self, connectors: Mapping[str, Connector], store: Store, metrics: Metrics, *,
                 clock: Callable[[], float], lease_secs: float, route_dead: RouteDead,
                 render_pool: RenderPool | None = None,
                 transports: Mapping[str, httpx.AsyncBaseTransport] | None = None, shared: bool = False):
        self.store, self.clock, self.lease_secs = store, clock, lease_secs
        self.shared = shared  # other processes deliver from the same store (PostgreSQL)
        transports = transports or {}
        self.render_pool = render_pool
        self.workers = {name: Worker(connector, store, metrics, clock=clock, lease_secs=lease_secs,
                                     route_dead=route_dead, on_deliveries=self.wake, render_pool=render_pool,
                                     transport=transports.get(name))
                        for name, connector in connectors.items()}
        self._tasks: list[asyncio.Task[None]] = []
        self._runs: list[asyncio.Task[None]] = []  # the workers' run loops (in _tasks too)
        self.grace = 10.0  # seconds the deliveries in flight get to finish at close

    async def start(self) -> None:
        if not self.shared:  # shared: the rows in flight may be another live process's; their leases bring back those
            stamp = iso(self.clock())  # of a process that died
            reset = await self.store.write(lambda conn: outbox.reset_in_flight(conn, stamp))
            if reset:
                log.warning("%d deliveries were in flight when the hub stopped; retrying them", reset)
        loop = asyncio.get_running_loop()
        self._runs = [loop.create_task(w.run(), name=f"hub-target-{n}") for n, w in self.workers.items()]
        self._tasks = [*self._runs]
        self._tasks.append(loop.create_task(self._expire_leases(), name="hub-delivery-leases"))

    async def _expire_leases(self) -> None:
        every = min(15.0, max(0.5, self.lease_secs / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.release_expired()
            except Exception:  # the store is failing: the next round tries again
                log.warning("could not check delivery leases", exc_info=True)

    async def release_expired(self) -> dict[str, int]:
        """Rows in flight past their lease that no worker here holds go back to pending, and their workers wake."""
        held = set().union(*(w.held for w in self.workers.values()))
        stamp = iso(self.clock())
        released = await self.store.write(lambda conn: outbox.release_expired(conn, stamp, held))
        for target, count in released.items():
            log.warning("target %s: %d deliveries were in flight past their lease; retrying them", target, count)
        self.wake(released)
        return released

    def wake(self, targets: Iterable[str] | None = None) -> None:
        for name in self.workers if targets is None else targets:
            if (worker := self.workers.get(name)) is not None:
                worker.wake.set()

    async def close(self) -> None:
        """Stop claiming, wait for the run loops to end their round, then close the workers. In that order: a claim
        committed after a worker had counted its deliveries in flight would start deliveries nobody waits for,
        whose rows would stay in flight until their lease ends."""
        for worker in self.workers.values():
            worker.stop()
        if self._runs:
            await asyncio.wait(self._runs, timeout=self.grace)
        await asyncio.gather(*(w.close(self.grace) for w in self.workers.values()))
        if self.render_pool is not None:
            await self.render_pool.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def render_pool_for(connectors: Mapping[str, Connector], wanted: bool | None, base_dir: Path) -> RenderPool | None:
    """A render process for the targets whose connector is ``SupportsEncode``, if ``pipeline.render_process``
    (or, when unset, the CPU count) wants one."""
    if wanted is False or (wanted is None and (os.cpu_count() or 1) < 2):
        return None
    specs = {name: Spec(c.config, c.mapping, base_dir) for name, c in connectors.items()
             if isinstance(c, SupportsEncode)}
    return RenderPool(specs) if specs else None
