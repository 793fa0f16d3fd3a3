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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from hub import lifecycle, logs
from hub.adapters import Adapter, Parsed, StoredEvent, adapter_class, stored_event
from hub.config import FingerprintConfig, SourceConfig
from hub.connector import RemoteStatus
from hub.errors import HubError, is_transient
from hub.ids import iso
from hub.models import FINDING_EVENTS, Finding
from hub.redact import clip
from hub.registry import connector_class
from hub.routing import Router
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import findings as finding_rows

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger("hub.pipeline")

# Lifecycle kinds a linked ticket keeps receiving when its finding no longer matches the route's `when`.
SYNCED_KINDS = frozenset(FINDING_EVENTS) - {"finding.created"}


def delivery_key(route: str, target: str, what: str) -> str:
    """Idempotency key per (route, target, finding step or event): sent as webhook-id, _id, ... by connectors."""
    return "fh_" + hashlib.sha256(f"{route}\x1f{target}\x1f{what}".encode()).hexdigest()[:40]


BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # seconds between rounds while the store refuses writes


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


@dataclass
class Outcome:
    targets: set[str] = field(default_factory=set)
    findings: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def poll_control(event: StoredEvent) -> Parsed | None:
    """The control event a complete full-import poll stores last (only the poller can store those)."""
    if event.verified_by != "poll" or b'"findings_hub"' not in event.body:
        return None
    doc = event.data
    if isinstance(doc, dict) and doc.get("findings_hub") == "poll.complete":
        return Parsed(full_scope=str(doc["scope"]), unseen_since=str(doc["since"]))
    return None


class Pipeline:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.config = hub.config
        self.router = Router(hub.config.routes, hub.metrics.route_errors)
        self.adapters: dict[str, Adapter] = {
            name: adapter_class(src.adapter)(name, hub.config.adapter_options(name))
            for name, src in hub.config.sources.items() if src.adapter}
        self.poll_adapters: dict[str, Adapter] = {
            name: adapter_class(src.poll.adapter)(name, None) for name, src in hub.config.sources.items()
            if src.poll is not None and src.poll.adapter and src.poll.adapter != src.adapter}
        self.fingerprints = {name: self._fingerprint_config(name, src) for name, src in hub.config.sources.items()}
        if hub.config.api.enabled:  # POST /api/v1/findings: Strobes-shaped items, identified by the tool's ids
            api = hub.config.api.source
            self.adapters[api] = adapter_class("strobes")(api, None)
            self.fingerprints[api] = FingerprintConfig(use="tool_id")
        self.peers = lifecycle.scope_peers(self.fingerprints)  # sources that share a fingerprint scope
        self.on_deliveries: Callable[[set[str]], None] = lambda targets: None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        m = hub.metrics
        self._processed = m.events_processed

    def _fingerprint_config(self, name: str, src: SourceConfig) -> FingerprintConfig:
        """The source's own setting, else its adapter's default (tool_id for platforms whose follow-ups carry only ids)."""
        if "use" in src.fingerprint.model_fields_set:
            return src.fingerprint
        adapter = self.adapters.get(name) or self.poll_adapters.get(name)
        return FingerprintConfig(use=getattr(adapter, "fingerprint", "default"), scope=src.fingerprint.scope)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hub-pipeline")
        self._wake.set()  # events left pending by a previous run

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        self._closing = True
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
        """Process one round of pending events: each one is processed, failed (for good, with the reason), or
        left pending by a transient fault (the store could not commit), to be taken again later."""
        rows = event_rows.pending(self.hub.store.conn, self.config.pipeline.batch_events)
        done = Round(taken=len(rows))
        if not rows:
            return done
        results = await asyncio.gather(*(self._process(row) for row in rows), return_exceptions=True)
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, Outcome):
                done.targets |= result.targets
                done.settled += 1
            elif result is None:
                done.settled += 1  # failed visibly, or processed meanwhile by a reprocess
            else:  # _process let a transient fault through: the event stays pending
                done.deferred += 1
                done.reason = str(result)
                log.debug("evt_%d left pending: %s", row["seq"], result, extra={"event_id": row["id"],
                                                                                "source": row["source"]})
        if done.targets:
            self.on_deliveries(done.targets)
        return done

    async def _process(self, row: dict[str, Any]) -> Outcome | None:
        """The event's outcome; None when it failed (stored as ``failed``, once) or was taken meanwhile.
        Raises only a transient error, after which the event is still pending. Each runs in its own task
        (``gather``), so the ids bound here for its log lines are this event's alone (and cost under 1 us)."""
        logs.bind(event_id=row["id"], source=row["source"])
        try:
            event = stored_event(row)
            adapter = (self.poll_adapters.get(event.source) if event.verified_by == "poll" else None) \
                or self.adapters.get(event.source)
            parsed = poll_control(event) or (adapter.parse(event) if adapter else Parsed())
            now = self.hub.clock()
            ctx = contextvars.copy_context()  # the write job runs in the writer's batch: it logs with this event's ids
            outcome = await self.hub.store.write(lambda conn: ctx.run(self.apply, conn, row["seq"], event, parsed, now))
        except Exception as exc:  # whatever fails this event fails it alone, visibly (or leaves it, if transient)
            if is_transient(exc):
                raise
            await self._fail(row["seq"], row["source"], exc)
            return None
        if outcome is not None:
            self._processed.labels(event.source, "processed").inc()
            log.debug("%s processed: %d finding(s), steps %s, deliveries to %s", row["id"], outcome.findings,
                      outcome.kinds or "-", ", ".join(sorted(outcome.targets)) or "none")
        return outcome

    async def _fail(self, seq: int, source: str, exc: BaseException) -> None:
        """Mark the event ``failed`` with the reason; a bug (not a HubError) is logged with its traceback, once."""
        reason = str(exc) if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, HubError):
            log.error("evt_%d failed on an unexpected error", seq, exc_info=exc)
        await self.hub.store.write(lambda conn: event_rows.mark_failed(conn, seq, reason[:2000], iso(self.hub.clock())))
        self._processed.labels(source, "failed").inc()
        log.warning("evt_%d failed: %s", seq, clip(reason, 1024))  # reasons quote the sender's values

    def apply(self, conn: sqlite3.Connection, seq: int, event: StoredEvent, parsed: Parsed, now: float) -> Outcome | None:
        """Everything one event changes, inside the caller's transaction."""
        if not event_rows.take(conn, seq, iso(now)):
            return None  # processed meanwhile (a reprocess raced us)
        out = Outcome()
        stamp = iso(now)
        fp_config = self.fingerprints.get(event.source)
        seen: set[str] = set()
        for incoming in parsed.findings:
            f = incoming.model_copy(update={"source": event.source})
            fp = lifecycle.fingerprint(f, event.source, fp_config)
            seen.add(fp)
            existing = finding_rows.by_fingerprint(conn, fp)
            change = lifecycle.apply(existing, f.model_copy(update={"fingerprint": fp}), now, self.config.sla)
            scope = parsed.full_scope or event.headers.get("x-hub-poll-scope") or \
                (finding_rows.scope_of(conn, existing.id) if existing else None)
            self.record(conn, change, scope, event.id, event.source, stamp, out)
            if existing is not None and existing.source != event.source:  # a fingerprint scope shared with its source
                self._also_reported(conn, existing.id, event.id, event.source, stamp)
        for target, statuses in parsed.statuses.items():
            self.apply_remote(conn, target, statuses, now, out)
        if parsed.full_scope and parsed.unseen_since:  # a paged full import ended: what it did not see is gone
            for gone in finding_rows.open_unseen(conn, event.source, parsed.full_scope, parsed.unseen_since,
                                                 self.peers.get(event.source, ())):
                change = lifecycle.resolve_absent(gone, now, f"absent from the full import that ended with {event.id}")
                self.record(conn, change, parsed.full_scope, event.id, event.source, stamp, out)
        elif parsed.full_scope:
            for gone in finding_rows.open_in_scope(conn, event.source, parsed.full_scope, seen,
                                                   self.peers.get(event.source, ())):
                change = lifecycle.resolve_absent(gone, now, f"absent from the full import in {event.id}")
                self.record(conn, change, parsed.full_scope, event.id, event.source, stamp, out)
        if self.router.wants("event.received"):
            pairs = self.router.match("event.received", event.source, {"event": event.public(), "kind": "event.received"})
            rows = [outbox.NewDelivery(r, t, "event.received", None, event.id, f"evt:{event.id}",
                                       delivery_key(r, t, event.id), None) for r, t in pairs]
            outbox.insert(conn, rows, stamp)
            out.targets |= {t for _, t in pairs}
        return out

    @staticmethod
    def _also_reported(conn: sqlite3.Connection, finding_id: str, event_id: str, source: str, stamp: str) -> None:
        """Note, once per opening, that another source of the scope reports this finding (its ``source`` stays the
        first reporter): a full re-import of the first source then leaves it open (``finding_rows.reporters``)."""
        if source not in finding_rows.reporters(conn, finding_id):
            finding_rows.add_history(conn, finding_id, stamp, "finding.reported", {"reported_by": source}, event_id,
                                     source)

    def record(self, conn: sqlite3.Connection, change: lifecycle.Change, scope: str | None, event_id: str | None,
               actor: str, stamp: str, out: Outcome, exclude_target: str | None = None) -> None:
        """Store a lifecycle change, its history, and the outbox rows its routes ask for."""
        f = change.finding
        finding_rows.save(conn, f, scope, stamp)
        out.findings += 1
        if change.kind:
            label = change.kind
        elif change.created:
            label = "finding.recorded"  # first seen already resolved: kept, nothing to deliver
        elif change.changes:
            label = "finding.changed"  # e.g. a resolved finding's fields changed
        else:
            return  # seen again, identical
        step = finding_rows.add_history(conn, f.id, stamp, label, change.changes, event_id, actor)
        if change.kind is None:
            return
        out.kinds[change.kind] = out.kinds.get(change.kind, 0) + 1
        self.route(conn, change.kind, f, change.changes, actor, step, stamp, out, exclude_target)

    def route(self, conn: sqlite3.Connection, kind: str, f: Finding, changes: dict[str, Any], source: str, step: int,
              stamp: str, out: Outcome, exclude_target: str | None = None) -> None:
        if not self.router.wants(kind):
            return
        data = f.model_dump(mode="json")
        pairs = self.router.match(kind, f.source or source, {"finding": data, "changes": changes, "kind": kind})
        pairs += self._still_linked(conn, kind, f.id, f.source or source, pairs)
        pairs = [(r, t) for r, t in pairs if t != exclude_target]  # no echo to the ticket that caused it
        if not pairs:
            return
        snapshot = orjson.dumps({"finding": data, "changes": changes}).decode()
        rows = [outbox.NewDelivery(r, t, kind, f.id, None, f.id, delivery_key(r, t, f"step:{step}"), snapshot)
                for r, t in pairs]
        outbox.insert(conn, rows, stamp)
        out.targets |= {t for _, t in pairs}

    def _still_linked(self, conn: sqlite3.Connection, kind: str, finding_id: str, source: str,
                      matched: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Once linked, always synced: a finding with a ticket at a target keeps getting its lifecycle there
        (updated, resolved, reopened, sla_breached) when no route's ``when`` matches it any more, through the
        first route from its source to that target that takes the kind. Otherwise a critical that drops to
        high is resolved in the hub while its ticket stays open forever."""
        if kind not in SYNCED_KINDS:
            return []
        done = {t for _, t in matched}
        out = []
        for route, target in self.router.reaching(kind, source):
            if target in done or target not in self._ticket_targets:
                continue
            done.add(target)
            if finding_rows.linked(conn, finding_id, target):
                out.append((route, target))
        return out

    @cached_property
    def _ticket_targets(self) -> frozenset[str]:
        """Targets whose connector keeps one remote object per finding (external_refs)."""
        return frozenset(name for name, cfg in self.config.targets.items()
                         if connector_class(cfg.type).work_items)

    def apply_remote(self, conn: sqlite3.Connection, target: str, statuses: Sequence[RemoteStatus], now: float,
                     out: Outcome | None = None) -> Outcome:
        """Ticket states read back (sync job or vendor webhook): store them; a ticket closed by the
        vendor's state category resolves its open finding, with ``resolved_by`` and no echo to it."""
        out = out if out is not None else Outcome()
        stamp = iso(now)
        for st in statuses:
            finding_id = finding_rows.finding_for_remote(conn, target, st.remote_id)
            if finding_id is None:
                continue
            finding_rows.set_remote_status(conn, finding_id, target, st.status, stamp)
            existing = finding_rows.get(conn, finding_id)
            if not st.closed or existing is None or existing.status != "open":
                continue
            change = lifecycle.apply(existing, existing.model_copy(update={"status": "resolved"}), now, self.config.sla)
            change.changes.update(resolved_by=target, remote_status=st.status)
            self.record(conn, change, finding_rows.scope_of(conn, finding_id), None, f"target:{target}", stamp, out,
                        exclude_target=target)
        return out

    def route_dead(self, conn: sqlite3.Connection, dead: list[tuple[outbox.ClaimedDelivery, str]], stamp: str) -> set[str]:
        """Deliveries that gave up become ``delivery.dead`` events for the routes that want them."""
        if not self.router.wants("delivery.dead"):
            return set()
        targets: set[str] = set()
        for row, reason in dead:
            if row.kind == "delivery.dead":
                continue  # a dead notification does not notify again
            snap = orjson.loads(row.snapshot) if row.snapshot else {}
            finding = snap.get("finding")
            info = {"id": outbox.delivery_id(row.seq), "target": row.target, "route": row.route,
                    "kind": row.kind, "reason": reason, "attempts": row.attempts,
                    "finding_id": row.finding_id, "event_id": row.event_id}
            source = finding["source"] if finding else event_rows.source_of(conn, row.event_id or "")
            pairs = self.router.match("delivery.dead", source or "",
                                      {"delivery": info, "finding": finding, "kind": "delivery.dead"})
            snapshot = orjson.dumps({"finding": finding, "delivery": info}).decode()
            outbox.insert(conn, [outbox.NewDelivery(r, t, "delivery.dead", row.finding_id, row.event_id,
                                                    f"dead:{row.seq}", delivery_key(r, t, f"dead:{row.seq}"),
                                                    snapshot) for r, t in pairs], stamp)
            targets |= {t for _, t in pairs}
        return targets

    async def check_sla(self) -> int:
        """Findings past their SLA date: mark them and route ``finding.sla_breached`` once each."""
        now = self.hub.clock()
        due = finding_rows.due_for_sla(self.hub.store.conn, iso(now))
        if not due:
            return 0

        def job(conn: sqlite3.Connection) -> Outcome:
            out, stamp = Outcome(), iso(now)
            for f in due:
                finding_rows.mark_sla_breached(conn, f.id, stamp)
                step = finding_rows.add_history(conn, f.id, stamp, "finding.sla_breached",
                                                {"sla_due_at": f.sla_due_at}, None, "sla")
                self.route(conn, "finding.sla_breached", f, {"sla_due_at": f.sla_due_at}, f.source, step, stamp, out)
            return out

        outcome = await self.hub.store.write(job)
        if outcome.targets:
            self.on_deliveries(outcome.targets)
        return len(due)
