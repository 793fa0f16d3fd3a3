"""Stored event -> adapter -> dedupe + lifecycle -> routes -> outbox rows, in one transaction per event.

Runs after commit, never inside the request: the processor wakes when the receiver stores an event
(and on a safety-net interval), reads pending events in commit order, parses each with its source's
adapter outside the transaction, then applies everything for that event in one write job.

Each event ends one of three ways, decided by the error's type (``hub.errors.is_transient``): processed;
``failed`` with the reason, once, when anything about it fails for good (an adapter bug, a template, a body
the encoder refuses), so the events behind it go on; or left pending when the store could not commit, to be
taken again once it can. Nothing of an event is half-applied, and ``hub events reprocess`` puts a failed one
back after the fix. A round in which no event moved backs off instead of spinning. A route whose ``when``
fails is skipped for that event alone (routing.py); the other routes still deliver.

A source with ``enrich:`` has its events completed from its API before they are applied (hub/enrichment.py), one
at a time in commit order. While that API fails, the event is marked waiting until its retry time and the rest of
its source's events stay behind it (the pending read skips them); other sources go on, and a timer wakes the loop
when the wait is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter

from hub import lifecycle, logs
from hub.adapters import Parsed
from hub.config import SlaConfig
from hub.enrichment import Enrich, EnrichmentWait
from hub.errors import HubError, is_transient
from hub.ids import iso
from hub.parsing import SourceParsers
from hub.pollmarks import page_scope
from hub.recorder import Applied, Recorder, delivery_key
from hub.redact import clip
from hub.remote_status import RemoteStatuses
from hub.store import Store
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store.conn import Conn
from hub.store.events import EventRow, StoredEvent

log = logging.getLogger("hub.pipeline")
T = TypeVar("T")

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # seconds between rounds while the store refuses writes
WAITING = "waiting"  # _process's outcome for an event held back until its source's API answers
IN_ORDER_SECS = 1.0  # longest a round spends on one enriching source's events


@dataclass(slots=True)
class _Ready:
    """An event parsed (and enriched) outside the transaction, ready to apply; ``ctx`` carries its log ids."""

    row: EventRow
    event: StoredEvent
    parsed: Parsed
    now: float
    ctx: contextvars.Context


async def _transient(step: Awaitable[T]) -> T | HubError:
    """The step's result, or the transient error it raised (the event stays pending; the round reports it)."""
    try:
        return await step
    except HubError as exc:
        return exc


@dataclass
class Round:
    """What one processing round did: events taken, settled (processed or failed) and left pending."""

    taken: int = 0
    settled: int = 0
    deferred: int = 0
    reason: str = ""
    targets: set[str] = field(default_factory=set)

    @property
    def stalled(self) -> bool:
        """Events were there and none of them moved: going again at once would only spin."""
        return self.taken > 0 and self.settled == 0


class Pipeline:
    """Processes stored events; tells ``on_deliveries`` which targets got new outbox rows."""

    def __init__(self, store: Store, parsers: SourceParsers, recorder: Recorder, remote: RemoteStatuses,
                 sla: SlaConfig, *, clock: Callable[[], float], batch_events: int, processed: Counter,
                 on_deliveries: Callable[[set[str]], None], enrich: Enrich | None = None,
                 active: Callable[[], bool] | None = None):
        self.store, self.parsers, self.recorder, self.remote, self.sla = store, parsers, recorder, remote, sla
        self.active = active  # None: always; else processing waits while it says no (hub/leader.py)
        self.clock, self.batch_events, self.on_deliveries = clock, batch_events, on_deliveries
        self.enrich = enrich
        self._processed = processed
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hub-pipeline")
        self._wake.set()  # events left pending by a previous run

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        self._wake.set()
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        """Rounds until nothing is pending. A round that settles nothing (the store refuses every write) waits,
        doubling from ``BACKOFF_FIRST`` to ``BACKOFF_MAX`` seconds, instead of taking the same events again at once."""
        backoff = 0.0
        while not self._closing:
            if backoff:
                with contextlib.suppress(TimeoutError):  # a wake-up does not cut a backoff short: the store is failing
                    await asyncio.wait_for(self._stop.wait(), timeout=backoff)
            else:
                await self._wake.wait()
            self._wake.clear()
            if self.active is not None and not self.active():
                continue
            try:
                while not self._closing:
                    done = await self.process_pending()
                    if done.stalled:
                        backoff = min(max(backoff * 2, BACKOFF_FIRST), BACKOFF_MAX)
                        log.warning("%d event(s) could not be processed now (%s); next try in %.1f s",
                                    done.deferred, done.reason, backoff)
                        break
                    backoff = 0.0
                    if done.taken == 0:
                        break
            except Exception:  # the store cannot even be read: keep the loop alive, back off
                backoff = min(max(backoff * 2, BACKOFF_FIRST), BACKOFF_MAX)
                log.exception("processing stopped; next try in %.1f s", backoff)

    async def process_pending(self) -> Round:
        """Process one round of pending events: each one is processed, failed (for good, with the reason), marked
        waiting (its source's API cannot complete it now), or left pending by a transient fault (the store could not
        commit), to be taken again later."""
        stamp = iso(self.clock())
        rows = await self.store.peek(lambda conn: event_rows.pending(conn, self.batch_events, stamp))
        done = Round(taken=len(rows))
        if not rows:
            return done
        in_order = self.enrich.sources if self.enrich is not None else frozenset()
        chains: dict[str, list[EventRow]] = {}
        for row in rows:
            if row.source in in_order:
                chains.setdefault(row.source, []).append(row)
        runs = await asyncio.gather(self._together([row for row in rows if row.source not in in_order]),
                                    *(self._in_order(chain) for chain in chains.values()))
        for row, result in (pair for run in runs for pair in run):
            if result is WAITING:
                done.settled += 1  # it moved: to waiting, with its retry time
            elif isinstance(result, Applied):
                done.targets |= result.targets
                done.settled += 1
            elif result is None:
                done.settled += 1  # failed visibly, or processed meanwhile by a reprocess
            else:  # a transient fault: the event stays pending
                done.deferred += 1
                done.reason = str(result)
                log.debug("%s left pending: %s", row.id, result, extra={"event_id": row.id, "source": row.source})
        if done.targets:
            self.on_deliveries(done.targets)
        return done

    async def _together(self, rows: list[EventRow]) -> list[tuple[EventRow, object]]:
        """Events applied in any order among themselves (their sources do not enrich): each parsed in a task of its
        own, then all applied in one write job, with one statement taking them (``events.take_many``). A job and a
        take per event cost a round trip, a plan and a future each: on PostgreSQL most of a round's time, in the
        process that also answers requests. If the shared job fails (one event's apply raised), each event goes
        again in a job of its own (``_commit``), so that only the failing one fails; a transient fault leaves them
        all pending, as it would have each of them."""
        prepared = await asyncio.gather(*(_transient(self._prepare(row)) for row in rows))
        ready = [p for p in prepared if isinstance(p, _Ready)]
        outcomes: dict[int, object] = {}
        if len(ready) > 1:
            try:
                applied = await self.store.write(lambda conn: self.apply_all(conn, ready))
            except Exception as exc:  # noqa: BLE001  (decided below: transient, or one event's own failure)
                if is_transient(exc):
                    outcomes = {r.row.seq: exc for r in ready}
                else:
                    log.debug("%d events applied together failed (%s); each goes alone", len(ready), exc)
            else:
                for r, outcome in zip(ready, applied, strict=True):
                    r.ctx.run(self._count, r, outcome)
                    outcomes[r.row.seq] = outcome
        alone = [r for r in ready if r.row.seq not in outcomes]
        each = await asyncio.gather(*(_transient(self._commit(r)) for r in alone))
        outcomes.update((r.row.seq, result) for r, result in zip(alone, each, strict=True))
        return [(row, outcomes[p.row.seq] if isinstance(p, _Ready) else p)
                for row, p in zip(rows, prepared, strict=True)]

    async def _in_order(self, rows: list[EventRow]) -> list[tuple[EventRow, object]]:
        """A source's events one after another; after one that waits or is left pending, the rest stay pending.
        A slow API holds the round at most ``IN_ORDER_SECS`` (and one request): the rest go in the next round, so
        the other sources' events taken with them are not held for a whole batch of reads."""
        loop = asyncio.get_running_loop()
        stop = loop.time() + IN_ORDER_SECS
        out: list[tuple[EventRow, object]] = []
        for row in rows:
            result = await _transient(self._process(row))
            out.append((row, result))
            if result is WAITING or isinstance(result, Exception) or loop.time() > stop:
                break
        return out

    async def _process(self, row: EventRow) -> Applied | str | None:
        """The event's outcome; None when it failed (stored as ``failed``, once) or was taken meanwhile.
        ``WAITING`` when its source's API cannot complete it now (marked, with the reason and the retry time).
        Raises only a transient error, after which the event is still pending."""
        ready = await self._prepare(row)
        return await self._commit(ready) if isinstance(ready, _Ready) else ready

    async def _prepare(self, row: EventRow) -> _Ready | str | None:
        """Parse (and enrich) the event outside the transaction. WAITING or None (failed) as ``_process`` says; raises
        only a transient error. Each runs in its own task (``gather``), so the ids bound here for its log lines are
        this event's alone (and cost under 1 us); its apply runs in a copy of this context."""
        logs.bind(event_id=row.id, source=row.source)
        try:
            event = row.event()
            parsed = self.parsers.parse(event)
            now = self.clock()
            if self.enrich is not None and event.source in self.enrich.sources:
                parsed = await self.enrich(event, parsed, now)
        except EnrichmentWait as wait:
            return await self._wait(row, wait)
        except Exception as exc:  # whatever fails this event fails it alone, visibly (or leaves it, if transient)
            if is_transient(exc):
                raise
            await self._fail(row.seq, row.source, exc)
            return None
        return _Ready(row, event, parsed, now, contextvars.copy_context())

    async def _commit(self, ready: _Ready) -> Applied | None:
        """Apply one prepared event in a write job of its own; None when it failed or was taken meanwhile."""
        logs.bind(event_id=ready.row.id, source=ready.row.source)
        try:
            outcome = await self.store.write(
                lambda conn: ready.ctx.run(self.apply, conn, ready.row.seq, ready.event, ready.parsed, ready.now))
        except Exception as exc:  # this event's own failure, or a transient one (raised)
            if is_transient(exc):
                raise
            await self._fail(ready.row.seq, ready.row.source, exc)
            return None
        self._count(ready, outcome)
        return outcome

    def _count(self, ready: _Ready, outcome: Applied | None) -> None:
        if outcome is not None:
            self._processed.labels(ready.event.source, "processed").inc()
            log.debug("%s processed: %d finding(s), steps %s, deliveries to %s", ready.row.id, outcome.findings,
                      outcome.kinds or "-", ", ".join(sorted(outcome.targets)) or "none")

    async def _wait(self, row: EventRow, wait: EnrichmentWait) -> str:
        """Mark the event waiting until ``wait.until`` and wake the loop then."""
        until = iso(wait.until)
        reason = f"waiting for enrichment until {until}: {wait.reason}"
        await self.store.write(lambda conn: event_rows.wait(conn, row.seq, until, reason[:2000]))
        log.warning("%s %s", row.id, clip(reason, 1024))
        self._wake_at(wait.until)
        return WAITING

    def _wake_at(self, at: float) -> None:
        """One timer, for the earliest wait: the round it starts reads what is due then."""
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(max(at - self.clock(), 0.0), self.wake)

    async def _fail(self, seq: int, source: str, exc: BaseException) -> None:
        """Mark the event ``failed`` with the reason; a bug (not a HubError) is logged with its traceback, once."""
        reason = str(exc) if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, HubError):
            log.error("evt_%d failed on an unexpected error", seq, exc_info=exc)
        await self.store.write(lambda conn: event_rows.mark_failed(conn, seq, reason[:2000], iso(self.clock())))
        self._processed.labels(source, "failed").inc()
        log.warning("evt_%d failed: %s", seq, clip(reason, 1024))  # reasons quote the sender's values

    def apply(self, conn: Conn, seq: int, event: StoredEvent, parsed: Parsed,
              now: float) -> Applied | None:
        """Everything one event changes, inside the caller's transaction; None if it was not pending any more."""
        if not event_rows.take(conn, seq, iso(now)):
            return None  # processed meanwhile (a reprocess raced us)
        return self._apply_taken(conn, event, parsed, now)

    def apply_all(self, conn: Conn, ready: list[_Ready]) -> list[Applied | None]:
        """``apply`` for each event, in order, inside the caller's transaction, with one statement taking them all.
        Each runs in its own context (its log lines carry its ids)."""
        taken = event_rows.take_many(conn, [r.row.seq for r in ready], iso(max(r.now for r in ready)))
        return [r.ctx.run(self._apply_taken, conn, r.event, r.parsed, r.now) if r.row.seq in taken else None
                for r in ready]

    def _apply_taken(self, conn: Conn, event: StoredEvent, parsed: Parsed, now: float) -> Applied:
        out = Applied()
        stamp = iso(now)
        fp_config = self.parsers.fingerprints.get(event.source)
        peers = self.parsers.peers.get(event.source, ())
        record = self.recorder.record
        seen: set[str] = set()
        for incoming in parsed.findings:
            f = incoming.model_copy(update={"source": event.source})
            fp = lifecycle.fingerprint(f, event.source, fp_config)
            seen.add(fp)
            existing = finding_rows.by_fingerprint(conn, fp)
            change = lifecycle.apply(existing, f.model_copy(update={"fingerprint": fp}), now, self.sla)
            scope = parsed.full_scope or page_scope(event) or \
                (finding_rows.scope_of(conn, existing.id) if existing else None)
            record(conn, change, scope, event.id, event.source, stamp, out)
            if existing is not None and existing.source != event.source:  # a fingerprint scope shared with its source
                self._also_reported(conn, existing.id, event.id, event.source, stamp)
        for target, statuses in parsed.statuses.items():
            self.remote.apply(conn, target, statuses, now, out)
        if parsed.full_scope and parsed.unseen_since:  # a paged full import ended: what it did not see is gone
            for gone in finding_rows.open_unseen(conn, event.source, parsed.full_scope, parsed.unseen_since, peers):
                change = lifecycle.resolve_absent(gone, now, f"absent from the full import that ended with {event.id}")
                record(conn, change, parsed.full_scope, event.id, event.source, stamp, out)
        elif parsed.full_scope:
            for gone in finding_rows.open_in_scope(conn, event.source, parsed.full_scope, seen, peers):
                change = lifecycle.resolve_absent(gone, now, f"absent from the full import in {event.id}")
                record(conn, change, parsed.full_scope, event.id, event.source, stamp, out)
        router = self.recorder.router
        if router.wants("event.received"):
            pairs = router.match("event.received", event.source, {"event": event.public(), "kind": "event.received"})
            rows = [outbox.NewDelivery(r, t, "event.received", None, event.id, f"evt:{event.id}",
                                       delivery_key(r, t, event.id), None) for r, t in pairs]
            outbox.insert(conn, rows, stamp)
            out.targets |= {t for _, t in pairs}
        return out

    @staticmethod
    def _also_reported(conn: Conn, finding_id: str, event_id: str, source: str, stamp: str) -> None:
        """Note, once per opening, that another source of the scope reports this finding (its ``source`` stays the
        first reporter): a full re-import of the first source then leaves it open (``finding_rows.reporters``)."""
        if source not in finding_rows.reporters(conn, finding_id):
            finding_rows.add_history(conn, finding_id, stamp, "finding.reported", {"reported_by": source}, event_id,
                                     source)
