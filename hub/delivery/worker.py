"""One target's worker: when to claim and send its outbox rows (capacity, batches, pacing, probes).

Whether the target may be tried is ``health.TargetHealth``'s to say; what it sends is built by
``items.ItemSource``; what the target answered is recorded by ``verdicts.VerdictLog``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from hub import logs
from hub.connector import Connector, SupportsBatch, Verdict
from hub.connector.http import verdict_for_exception
from hub.delivery.health import TargetHealth
from hub.delivery.items import ItemSource
from hub.delivery.verdicts import RouteDead, VerdictLog
from hub.ids import iso, parse_iso
from hub.metrics import Metrics
from hub.pacing import CircuitBreaker, TokenBucket
from hub.render_pool import RenderPool
from hub.store import Store
from hub.store import deliveries as outbox
from hub.store.conn import Conn
from hub.store.deliveries import ClaimedDelivery

log = logging.getLogger("hub.delivery")
IDLE_WAIT = 30.0


class Worker:
    """Delivers one target's outbox rows. ``route_dead`` turns rows that gave up into ``delivery.dead`` rows (in the
    write that records them); ``on_deliveries`` is told the targets that got new rows that way."""

    def __init__(self, connector: Connector, store: Store, metrics: Metrics, *, clock: Callable[[], float],
                 lease_secs: float, route_dead: RouteDead, on_deliveries: Callable[[set[str]], None],
                 render_pool: RenderPool | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.name = name = connector.target
        self.connector, self.store, self.clock = connector, store, clock
        cfg = self.cfg = connector.config
        self.batch = getattr(cfg, "batch", None) if isinstance(connector, SupportsBatch) else None
        rate = cfg.rate_limit.per_sec if cfg.rate_limit else connector.default_rate_limit
        self.bucket = TokenBucket(rate, cfg.rate_limit.burst if cfg.rate_limit else None, time.monotonic) \
            if rate else None
        cb = cfg.circuit_breaker
        min_requests, failure_rate = cb.opening()
        self.breaker = CircuitBreaker(window=cb.window_secs, min_requests=min_requests, failure_rate=failure_rate,
                                      cooldown=cb.cooldown_secs, max_cooldown=cb.max_cooldown_secs, probes=cb.probes,
                                      clock=clock)  # the hub's clock, as the retry schedule's: one to inject
        self.health = TargetHealth(name, self.breaker, metrics.circuit_open)
        self.capacity = self.batch.in_flight if self.batch else cfg.concurrency
        self.clients: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for _ in range(self.capacity):
            self.clients.put_nowait(connector.client(transport))
        self.in_flight = 0
        self.lease_secs = lease_secs
        self.source = ItemSource(name, connector, store, clock, render_pool, metrics.render_batches)
        self.verdicts = VerdictLog(name, store, clock, cfg.retry, links=connector.work_items, route_dead=route_dead,
                                   on_deliveries=on_deliveries, outcomes=metrics.deliveries,
                                   latency=metrics.delivery_latency)
        self.backlogged = False  # the last claim was a full batch: claim the next one without waiting
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def held(self) -> set[int]:
        """Rows claimed here and not yet recorded: a lease check never releases them."""
        return self.verdicts.held

    async def run(self) -> None:
        logs.bind(target=self.name)  # this task's lines, and those of the delivery tasks it starts
        while not self._closing:
            try:
                delay = await self.step()
            except Exception:
                log.exception("target %s: dispatch round failed", self.name)
                delay = 5.0
            if delay is None:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            self.wake.clear()

    async def step(self) -> float | None:
        """Start what may start now. None: go again at once; a number: wait that long (or for a wake-up)."""
        if self.verdicts.waiting and not await self.verdicts.again():
            return self.verdicts.backoff
        if (pause := self.health.pause_left()) > 0:
            return pause
        allowance = self.breaker.allowance()
        if allowance == 0:
            return self.breaker.wait() or IDLE_WAIT
        slots = self.capacity - self.in_flight
        if slots <= 0:
            return IDLE_WAIT  # a finishing delivery wakes us
        now = self.clock()
        if allowance == 1:
            return await self._probe(now)
        limit = self.batch.max_events if self.batch else slots
        if self.batch and not self.backlogged and (wait := self._batch_wait(now)) is not None:
            return wait
        stamp, lease = iso(now), iso(now + self.lease_secs)
        rows = await self.store.write(lambda conn: outbox.claim(conn, self.name, stamp, limit, lease),
                                          single_statement=True)
        self.held.update(r.seq for r in rows)
        self.backlogged = len(rows) == limit
        if not rows:
            due = outbox.next_due(self.store.conn, self.name)
            return min(IDLE_WAIT, max(0.05, parse_iso(due) - self.clock())) if due else IDLE_WAIT
        if self.batch:
            self._spawn(self._deliver_batch(rows))
        else:
            for row in rows:
                self._spawn(self._deliver_one(row))
        return None

    async def _probe(self, now: float) -> float | None:
        """Half-open: one attempt, on the oldest pending delivery (due or not) that the probes since the circuit
        opened have not tried yet (any, once all have been). The oldest first: after an outage it is the one that
        has waited longest, and one that failed only for its own reasons cannot hold the circuit by itself."""
        stamp, lease, skip = iso(now), iso(now + self.lease_secs), tuple(self.health.probed)

        def job(conn: Conn) -> list[ClaimedDelivery]:
            return outbox.claim_probe(conn, self.name, stamp, lease, skip) or \
                (outbox.claim_probe(conn, self.name, stamp, lease) if skip else [])

        rows = await self.store.write(job)
        if not rows:
            return IDLE_WAIT  # nothing to probe with: a new delivery wakes the worker
        self.held.update(r.seq for r in rows)
        self.health.probing(rows[0].seq)
        self._spawn(self._deliver_batch(rows) if self.batch else self._deliver_one(rows[0]))
        return None

    async def _expedite(self, opened_at: float) -> None:
        """The target is back: its deliveries the outage deferred along the retry schedule are due now."""
        since, stamp = iso(opened_at - self.breaker.window), iso(self.clock())
        moved = await self.store.write(lambda conn: outbox.expedite(conn, self.name, since, stamp))
        log.info("target %s: circuit closed after %.0f s: the target answers again; %d deferred deliveries are due "
                 "now", self.name, max(0.0, self.clock() - opened_at), moved)

    def _batch_wait(self, now: float) -> float | None:
        """A partial batch waits until its oldest item is ``timeout_secs`` old, unless it is full."""
        assert self.batch is not None
        count, oldest = outbox.due_summary(self.store.conn, self.name, iso(now), self.batch.max_events)
        if count == 0 or count >= self.batch.max_events or oldest is None:
            return None
        left = parse_iso(oldest) + self.batch.timeout_secs - now
        return left if left > 0.001 else None

    def _spawn(self, coro: Any) -> None:
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("target %s: delivery task failed", self.name, exc_info=task.exception())
        self.wake.set()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client of this target's pool (one per delivery slot), returned after use."""
        client = await self.clients.get()
        try:
            yield client
        finally:
            self.clients.put_nowait(client)

    async def _pace(self) -> None:
        while self.bucket is not None and (wait := self.bucket.delay()) > 0:  # noqa: ASYNC110  (the bucket says how long)
            await asyncio.sleep(wait)

    async def _deliver_one(self, row: ClaimedDelivery) -> None:
        logs.bind(delivery_id=outbox.delivery_id(row.seq), finding_id=row.finding_id, event_id=row.event_id)
        started = time.perf_counter()
        try:
            [item] = await self.source.items([row])
            await self._pace()
            async with self.client() as client:
                verdict = await self.connector.deliver(client, item)
        except Exception as exc:  # noqa: BLE001  (a connector bug becomes a verdict, never a dead worker)
            verdict = verdict_for_exception(exc, self.cfg.request.timeout_secs)
        await self._record([row], [verdict], time.perf_counter() - started)

    async def _record(self, rows: list[ClaimedDelivery], verdicts: list[Verdict], elapsed: float) -> None:
        if (opened_at := self.health.observe(verdicts, self.clock())) is not None:
            self._spawn(self._expedite(opened_at))
        await self.verdicts.record(rows, verdicts, elapsed)

    async def _deliver_batch(self, rows: list[ClaimedDelivery]) -> None:
        assert isinstance(self.connector, SupportsBatch)
        started = time.perf_counter()
        try:
            items, slots = await self.source.encoded(rows)
            sent: list[Verdict] = []
            if items:  # not when every row's template failed in the render process
                await self._pace()
                async with self.client() as client:
                    sent = await self.connector.deliver_batch(client, items)
            if len(sent) != len(items):
                raise RuntimeError(f"{self.cfg.type} returned {len(sent)} verdicts for {len(items)} items")
            answers = iter(sent)
            verdicts = [v if v is not None else next(answers) for v in slots]
        except Exception as exc:  # noqa: BLE001  (a connector bug becomes a verdict, never a dead worker)
            verdicts = [verdict_for_exception(exc, self.cfg.request.timeout_secs)] * len(rows)
        await self._record(rows, verdicts, time.perf_counter() - started)

    def stop(self) -> None:
        """Claim nothing more: the run loop ends after its current round (a claim being written included)."""
        self._closing = True
        self.wake.set()

    async def close(self, grace: float = 10.0) -> None:
        """Let the deliveries in flight finish (up to ``grace`` seconds), then give back what is still held."""
        self.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._release_held()
        while not self.clients.empty():
            await self.clients.get_nowait().aclose()
        self.connector.close()

    async def _release_held(self) -> None:
        """Rows still held at close go back to pending now, not when their lease ends (minutes later, and with
        several processes another one is waiting to deliver them): verdicts the store refused get one more try,
        and rows whose attempt was cut off by the grace are released (the attempt may have reached the target:
        at least once, as after a lease)."""
        if self.verdicts.waiting:
            await self.verdicts.again()
        left = sorted(self.held)
        if not left:
            return
        try:
            await self.store.write(lambda conn: outbox.release(conn, left))
        except Exception as exc:  # noqa: BLE001  (the store is failing: the lease brings them back)
            log.warning("target %s: %d deliveries still in flight at shutdown could not be released (%s); they go "
                        "back to pending when their lease ends", self.name, len(left), exc)
            return
        self.held.difference_update(left)
        log.warning("target %s: %d deliveries still in flight at shutdown were released", self.name, len(left))
