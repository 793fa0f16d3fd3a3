"""The dispatcher: outbox rows -> render -> send -> classify -> record, one worker per target.

Rows are the truth: a worker claims due deliveries (marking them in flight in a committed write),
delivers them, and records each verdict: OK -> done, RETRY -> pending again at the next time of the
schedule (or Retry-After), PERMANENT or schedule used up -> dead, with the reason. A crash leaves
rows in flight; the next start puts them back to pending, so nothing acknowledged is lost.

Each target has its own concurrency, token bucket and circuit breaker, so one dead target never
delays another. Targets whose connector ``SupportsBatch`` get many items per request and one verdict
per item. The worker wakes at once when the pipeline adds rows; the scheduler's safety-net job wakes
every worker periodically in case a wake-up was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx

from hub import logs
from hub.adapters import stored_event
from hub.connector import Connector, Item, Outcome, SupportsBatch, Verdict, verdict_for_exception
from hub.errors import is_transient
from hub.ids import iso, parse_iso
from hub.items import item_from
from hub.pacing import CircuitBreaker, TokenBucket, retry_delay
from hub.registry import connector_class
from hub.render_pool import RenderPool, Spec
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store.deliveries import ClaimedDelivery

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger("hub.delivery")
IDLE_WAIT = 30.0


def build_connector(hub: Hub, name: str) -> Connector:
    cfg = hub.config.targets[name]
    return connector_class(cfg.type)(name, cfg, hub.config.mappings[name], hub.config.resolve("."))


@dataclass(slots=True)
class Unrecorded:
    """The verdicts of one attempt, as the store job that records them, with the rows they are about."""

    job: Callable[[sqlite3.Connection], set[str]]
    rows: list[ClaimedDelivery]
    dead: list[tuple[ClaimedDelivery, Verdict]]


class Worker:
    """Delivers one target's outbox rows."""

    def __init__(self, hub: Hub, name: str, transport: httpx.AsyncBaseTransport | None = None):
        self.hub, self.name = hub, name
        self.connector = build_connector(hub, name)
        cfg = self.connector.config
        self.cfg = cfg
        self.batch = getattr(cfg, "batch", None) if isinstance(self.connector, SupportsBatch) else None
        rate = cfg.rate_limit.per_sec if cfg.rate_limit else self.connector.default_rate_limit
        self.bucket = TokenBucket(rate, cfg.rate_limit.burst if cfg.rate_limit else None, time.monotonic) \
            if rate else None
        cb = cfg.circuit_breaker
        min_requests, failure_rate = cb.opening()
        self.breaker = CircuitBreaker(window=cb.window_secs, min_requests=min_requests, failure_rate=failure_rate,
                                      cooldown=cb.cooldown_secs, max_cooldown=cb.max_cooldown_secs, probes=cb.probes,
                                      clock=hub.clock)  # the hub's clock, as the retry schedule's: one to inject
        self._probed: list[int] = []  # seqs tried by the probes since the circuit last opened
        self._opened_at: float | None = None  # hub clock: when the circuit opened, until it closes
        self.capacity = self.batch.in_flight if self.batch else cfg.concurrency
        self.clients: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for _ in range(self.capacity):
            self.clients.put_nowait(self.connector.client(transport))
        self.in_flight = 0
        self.held: set[int] = set()  # claimed by this worker and not yet recorded: never released by lease expiry
        self.lease_secs = hub.config.pipeline.claim_lease_secs
        self._unrecorded: list[Unrecorded] = []  # verdicts whose write failed: kept, and written again
        self._record_backoff = 0.0
        self.backlogged = False  # the last claim was a full batch: claim the next one without waiting
        self.paused_until = 0.0  # monotonic; a 429 with Retry-After pauses the whole target
        self.wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        m = hub.metrics
        self._outcomes = {o: m.deliveries.labels(name, o.value) for o in Outcome}
        self._latency = m.delivery_latency.labels(name)
        self._circuit = m.circuit_open.labels(name)
        self._rendered = {where: m.render_batches.labels(name, where) for where in ("process", "loop")}

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
        if self._unrecorded and not await self._record_again():
            return self._record_backoff
        if (pause := self.paused_until - time.monotonic()) > 0:
            return pause
        allowance = self.breaker.allowance()
        if allowance == 0:
            return self.breaker.wait() or IDLE_WAIT
        slots = self.capacity - self.in_flight
        if slots <= 0:
            return IDLE_WAIT  # a finishing delivery wakes us
        now = self.hub.clock()
        if allowance == 1:
            return await self._probe(now)
        limit = self.batch.max_events if self.batch else slots
        if self.batch and not self.backlogged and (wait := self._batch_wait(now)) is not None:
            return wait
        stamp, lease = iso(now), iso(now + self.lease_secs)
        rows = await self.hub.store.write(lambda conn: outbox.claim(conn, self.name, stamp, limit, lease),
                                          single_statement=True)
        self.held.update(r.seq for r in rows)
        self.backlogged = len(rows) == limit
        if not rows:
            due = outbox.next_due(self.hub.store.conn, self.name)
            return min(IDLE_WAIT, max(0.05, parse_iso(due) - self.hub.clock())) if due else IDLE_WAIT
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
        stamp, lease, skip = iso(now), iso(now + self.lease_secs), tuple(self._probed)

        def job(conn: sqlite3.Connection) -> list[ClaimedDelivery]:
            return outbox.claim_probe(conn, self.name, stamp, lease, skip) or \
                (outbox.claim_probe(conn, self.name, stamp, lease) if skip else [])

        rows = await self.hub.store.write(job)
        if not rows:
            return IDLE_WAIT  # nothing to probe with: a new delivery wakes the worker
        self.held.update(r.seq for r in rows)
        self.breaker.start_probe()
        self._probed.append(rows[0].seq)
        self._spawn(self._deliver_batch(rows) if self.batch else self._deliver_one(rows[0]))
        return None

    async def _expedite(self, opened_at: float) -> None:
        """The target is back: its deliveries the outage deferred along the retry schedule are due now."""
        since, stamp = iso(opened_at - self.breaker.window), iso(self.hub.clock())
        moved = await self.hub.store.write(lambda conn: outbox.expedite(conn, self.name, since, stamp))
        log.info("target %s: circuit closed after %.0f s: the target answers again; %d deferred deliveries are due "
                 "now", self.name, max(0.0, self.hub.clock() - opened_at), moved)

    def _batch_wait(self, now: float) -> float | None:
        """A partial batch waits until its oldest item is ``timeout_secs`` old, unless it is full."""
        assert self.batch is not None
        count, oldest = outbox.due_summary(self.hub.store.conn, self.name, iso(now), self.batch.max_events)
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

    async def _items(self, rows: list[ClaimedDelivery]) -> list[Item]:
        events = {k: stored_event(v).public() for k, v in self._event_rows(rows).items()}
        items = []
        for r in rows:
            ref = None
            if self.connector.work_items and r.finding_id:
                ref = finding_rows.ref(self.hub.store.conn, r.finding_id, self.name)
                if ref is None:  # the link row goes to disk before the create call
                    fid, stamp = r.finding_id, iso(self.hub.clock())
                    ref = await self.hub.store.write(partial(finding_rows.claim_ref, finding_id=fid, target=self.name, now=stamp))
            items.append(item_from(self.name, r.id, r.kind, r.idempotency_key, r.route, r.snapshot,
                                   events.get(r.event_id) if r.event_id else None, r.attempts, ref))
        return items

    async def _deliver_one(self, row: ClaimedDelivery) -> None:
        logs.bind(delivery_id=outbox.delivery_id(row.seq), finding_id=row.finding_id, event_id=row.event_id)
        started = time.perf_counter()
        try:
            [item] = await self._items([row])
            await self._pace()
            async with self.client() as client:
                verdict = await self.connector.deliver(client, item)
        except Exception as exc:  # noqa: BLE001  (a connector bug becomes a verdict, never a dead worker)
            verdict = verdict_for_exception(exc, self.cfg.request.timeout_secs)
        await self._record([row], [verdict], time.perf_counter() - started)

    async def _deliver_batch(self, rows: list[ClaimedDelivery]) -> None:
        assert isinstance(self.connector, SupportsBatch)
        started = time.perf_counter()
        try:
            items, slots = await self._encoded_items(rows)
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

    async def _encoded_items(self, rows: list[ClaimedDelivery]) -> tuple[list[Item], list[Verdict | None]]:
        """The items to send, encoded by the render process when it takes this batch, and a slot per row: None
        for a row that is sent, a PERMANENT verdict for a row whose template failed there."""
        pool = self.hub.dispatcher.render_pool
        encoded = None
        if pool is not None and pool.wants(self.name, len(rows)):
            events = self._event_rows(rows)
            encoded = await pool.encode(self.name, [
                (r.id, r.kind, r.idempotency_key, r.route, r.snapshot,
                 events.get(r.event_id) if r.event_id else None, r.attempts) for r in rows])
        if encoded is None:  # small batch, no pool, or the child died: encode here
            self._rendered["loop"].inc()
            return await self._items(rows), [None] * len(rows)
        self._rendered["process"].inc()
        items: list[Item] = []
        slots: list[Verdict | None] = []
        for r, data in zip(rows, encoded, strict=True):
            if isinstance(data, Verdict):
                slots.append(data)
                continue
            slots.append(None)
            items.append(Item(r.id, r.kind, r.idempotency_key, r.route, self.name, attempt=r.attempts, encoded=data))
        return items, slots

    def _event_rows(self, rows: list[ClaimedDelivery]) -> dict[str, dict[str, Any]]:
        """Stored events read by raw ``event.received`` rows (they carry no snapshot), by event id."""
        ids = [r.event_id for r in rows if r.event_id and r.snapshot is None]
        return event_rows.by_ids(self.hub.store.conn, ids) if ids else {}

    async def _record(self, rows: list[ClaimedDelivery], verdicts: list[Verdict], elapsed: float) -> None:
        now = self.hub.clock()
        results, dead, links = [], [], []
        retry = self.cfg.retry
        outcomes: Counter[Outcome] = Counter()
        created: dict[str, float] = {}  # a batch's rows share few created_at stamps: parse each once
        for row, v in zip(rows, verdicts, strict=True):
            outcomes[v.outcome] += 1
            if self.connector.work_items and v.remote_id and row.finding_id:
                links.append((row.finding_id, v))  # a ticket made before a later step failed is linked too
            if v.outcome is Outcome.OK:
                state, next_at = "done", None
                stamp = row.created_at
                if (at := created.get(stamp)) is None:
                    at = created[stamp] = parse_iso(stamp)
                self._latency.observe(max(0.0, now - at))
            else:
                delay = retry_delay(row.attempts, retry.schedule_secs, retry.jitter, v.retry_after) \
                    if v.outcome is Outcome.RETRY else None
                state, next_at = ("pending", iso(now + delay)) if delay is not None else ("dead", None)
                if state == "dead":
                    dead.append((row, v))
            results.append(outbox.Result(row.seq, state, next_at, v.status, v.reason, v.outcome.value,
                                         elapsed * 1000 / max(1, len(rows)), v.remote_id))
        for outcome, n in outcomes.items():
            self._outcomes[outcome].inc(n)
        self._pacing(verdicts, now)
        stamp = iso(now)

        def job(conn: sqlite3.Connection) -> set[str]:
            outbox.record(conn, results, stamp)
            for fid, v in links:
                finding_rows.link_ref(conn, fid, self.name, v.remote_id or "", v.remote_url, v.remote_status, stamp)
            return self.hub.pipeline.route_dead(conn, [(r, v.reason) for r, v in dead], stamp) if dead else set()

        await self._save(Unrecorded(job, rows, dead))

    async def _save(self, results: Unrecorded) -> bool:
        """Write the verdicts of an attempt. If the store refuses for now (a transient error), they are kept and
        written again at the next step: the target already answered, so sending again would duplicate; the rows
        stay held meanwhile. Any other failure would fail the same way every time: the rows are let go, and their
        lease puts them back to pending to be tried again (at least once, never stuck)."""
        try:
            targets = await self.hub.store.write(results.job)
        except Exception as exc:
            if is_transient(exc):
                self._unrecorded.append(results)
                log.error("target %s: the results of %d deliveries could not be recorded, will retry: %s",
                          self.name, len(results.rows), exc)
                return False
            self.held.difference_update(r.seq for r in results.rows)
            log.error("target %s: recording the results of %d deliveries failed; they go back to pending when "
                      "their lease ends", self.name, len(results.rows), exc_info=exc)
            return True
        self.held.difference_update(r.seq for r in results.rows)
        for row, v in results.dead:
            log.warning("target %s: dlv_%d is dead after %d attempt(s): %s", self.name, row.seq, row.attempts,
                        v.reason, extra={"delivery_id": outbox.delivery_id(row.seq), "target": self.name,
                                         "finding_id": row.finding_id, "event_id": row.event_id})
        if targets:
            self.hub.dispatcher.wake(targets)
        return True

    async def _record_again(self) -> bool:
        """Write the kept verdicts, oldest first; False (and a longer backoff) while the store still refuses."""
        waiting, self._unrecorded = self._unrecorded, []
        for results in waiting:
            await self._save(results)
        if self._unrecorded:
            self._record_backoff = min(max(self._record_backoff * 2, 0.5), 30.0)
            return False
        self._record_backoff = 0.0
        return True

    def _pacing(self, verdicts: list[Verdict], now: float) -> None:
        breaker = self.breaker
        if any(v.outcome is Outcome.OK for v in verdicts):
            if breaker.success() and self._opened_at is not None:
                self._probed.clear()
                self._spawn(self._expedite(self._opened_at))
                self._opened_at = None
        elif any(v.outcome is Outcome.RETRY for v in verdicts) and breaker.failure():
            self._probed.clear()
            if breaker.trips == 1:  # closed -> open: once per outage at WARNING
                self._opened_at = now
                log.warning("target %s: circuit open: %d of %d attempts in the last %.0f s failed; deliveries wait "
                            "(their retries unused), probes in %.0f s", self.name, breaker.failures, breaker.attempts,
                            breaker.window, breaker.cooldown)
            else:
                log.info("target %s: circuit still open: %d probe(s) failed; next probes in %.0f s", self.name,
                         breaker.probes, breaker.cooldown)
        self._circuit.set(1 if breaker.state != "closed" else 0)
        waits = [v.retry_after for v in verdicts if v.retry_after and v.status == 429]
        if waits:
            self.paused_until = max(self.paused_until, time.monotonic() + min(max(waits), 3600.0))

    async def close(self, grace: float = 10.0) -> None:
        self._closing = True
        self.wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        for task in self._tasks:
            task.cancel()
        while not self.clients.empty():
            await self.clients.get_nowait().aclose()
        self.connector.close()


class Dispatcher:
    def __init__(self, hub: Hub, transports: dict[str, httpx.AsyncBaseTransport] | None = None):
        self.hub = hub
        transports = transports or {}
        self.workers = {name: Worker(hub, name, transports.get(name)) for name in hub.config.targets}
        self.render_pool = render_pool(hub, self.workers)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        stamp = iso(self.hub.clock())
        reset = await self.hub.store.write(lambda conn: outbox.reset_in_flight(conn, stamp))
        if reset:
            log.warning("%d deliveries were in flight when the hub stopped; retrying them", reset)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(w.run(), name=f"hub-target-{n}") for n, w in self.workers.items()]
        self._tasks.append(loop.create_task(self._expire_leases(), name="hub-delivery-leases"))

    async def _expire_leases(self) -> None:
        every = min(15.0, max(0.5, self.hub.config.pipeline.claim_lease_secs / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.release_expired()
            except Exception:  # the store is failing: the next round tries again
                log.warning("could not check delivery leases", exc_info=True)

    async def release_expired(self) -> dict[str, int]:
        """Rows in flight past their lease that no worker here holds go back to pending, and their workers wake."""
        held = set().union(*(w.held for w in self.workers.values()))
        stamp = iso(self.hub.clock())
        released = await self.hub.store.write(lambda conn: outbox.release_expired(conn, stamp, held))
        for target, count in released.items():
            log.warning("target %s: %d deliveries were in flight past their lease; retrying them", target, count)
        self.wake(released)
        return released

    def wake(self, targets: Iterable[str] | None = None) -> None:
        for name in self.workers if targets is None else targets:
            if (worker := self.workers.get(name)) is not None:
                worker.wake.set()

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.workers.values()))
        if self.render_pool is not None:
            await self.render_pool.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def render_pool(hub: Hub, workers: dict[str, Worker]) -> RenderPool | None:
    """A render process for the targets whose connector ``encodes_apart``, if the config (or the CPU count) wants one."""
    wanted = hub.config.pipeline.render_process
    if wanted is False or (wanted is None and (os.cpu_count() or 1) < 2):
        return None
    specs = {name: Spec(w.cfg, w.connector.mapping, hub.config.resolve(".")) for name, w in workers.items()
             if w.connector.encodes_apart and w.batch is not None}
    return RenderPool(specs) if specs else None
