"""Recording what a target answered: each verdict becomes the row's next state, in one write per attempt.

OK -> done; RETRY -> pending at the next time of the retry schedule (or Retry-After); PERMANENT, or the schedule
used up -> dead, routed on as ``delivery.dead`` in the same write. A ticket made before a later step failed is
linked too. If the store refuses the write for now (a transient error), the verdicts are kept and written again:
the target already answered, so sending again would duplicate; the rows stay held meanwhile, so their lease does
not hand them out again. Any other failure would fail the same way every time: the rows are let go, and their lease
puts them back to pending (delivered at least once, never stuck).
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from hub.connector import Outcome, Verdict
from hub.connector.config import RetryConfig
from hub.errors import is_transient
from hub.ids import iso, parse_iso
from hub.pacing import retry_delay
from hub.store import Store
from hub.store import deliveries as outbox
from hub.store import findings as finding_rows
from hub.store.conn import Conn
from hub.store.deliveries import ClaimedDelivery

log = logging.getLogger("hub.delivery")

RouteDead = Callable[[Conn, list[tuple[ClaimedDelivery, str]], str], set[str]]


@dataclass(slots=True)
class Unrecorded:
    """The verdicts of one attempt, as the store job that records them, with the rows they are about."""

    job: Callable[[Conn], set[str]]
    rows: list[ClaimedDelivery]
    dead: list[tuple[ClaimedDelivery, Verdict]]


class VerdictLog:
    """``held``: the rows claimed by this target's worker and not yet recorded (never released by lease expiry)."""

    def __init__(self, target: str, store: Store, clock: Callable[[], float], retry: RetryConfig, *,
                 links: bool, route_dead: RouteDead, on_deliveries: Callable[[set[str]], None],
                 outcomes: Counter, latency: Histogram):
        self.target, self.store, self.clock, self.retry, self.links = target, store, clock, retry, links
        self.route_dead, self.on_deliveries = route_dead, on_deliveries
        self.held: set[int] = set()
        self._unrecorded: list[Unrecorded] = []
        self.backoff = 0.0
        self._outcomes = {o: outcomes.labels(target, o.value) for o in Outcome}
        self._latency = latency.labels(target)

    @property
    def waiting(self) -> bool:
        """Verdicts the store refused are waiting to be written again."""
        return bool(self._unrecorded)

    async def record(self, rows: list[ClaimedDelivery], verdicts: list[Verdict], elapsed: float) -> None:
        now = self.clock()
        results, dead, links = [], [], []
        schedule = self.retry
        outcomes: Tally[Outcome] = Tally()
        created: dict[str, float] = {}  # a batch's rows share few created_at stamps: parse each once
        for row, v in zip(rows, verdicts, strict=True):
            outcomes[v.outcome] += 1
            if self.links and v.remote_id and row.finding_id:
                links.append((row.finding_id, v))  # a ticket made before a later step failed is linked too
            if v.outcome is Outcome.OK:
                state, next_at = "done", None
                stamp = row.created_at
                if (at := created.get(stamp)) is None:
                    at = created[stamp] = parse_iso(stamp)
                self._latency.observe(max(0.0, now - at))
            else:
                delay = retry_delay(row.attempts, schedule.schedule_secs, schedule.jitter, v.retry_after) \
                    if v.outcome is Outcome.RETRY else None
                state, next_at = ("pending", iso(now + delay)) if delay is not None else ("dead", None)
                if state == "dead":
                    dead.append((row, v))
            results.append(outbox.Result(row.seq, state, next_at, v.status, v.reason, v.outcome.value,
                                         elapsed * 1000 / max(1, len(rows)), v.remote_id))
        for outcome, n in outcomes.items():
            self._outcomes[outcome].inc(n)
        stamp = iso(now)

        def job(conn: Conn) -> set[str]:
            outbox.record(conn, results, stamp)
            for fid, v in links:
                finding_rows.link_ref(conn, fid, self.target, v.remote_id or "", v.remote_url, v.remote_status,
                                      stamp)
            return self.route_dead(conn, [(r, v.reason) for r, v in dead], stamp) if dead else set()

        await self._save(Unrecorded(job, rows, dead))

    async def _save(self, results: Unrecorded) -> bool:
        """Write the verdicts of an attempt; keep them when the store refuses for now (see the module's doc)."""
        try:
            targets = await self.store.write(results.job)
        except Exception as exc:
            if is_transient(exc):
                self._unrecorded.append(results)
                log.error("target %s: the results of %d deliveries could not be recorded, will retry: %s",
                          self.target, len(results.rows), exc)
                return False
            self.held.difference_update(r.seq for r in results.rows)
            log.error("target %s: recording the results of %d deliveries failed; they go back to pending when "
                      "their lease ends", self.target, len(results.rows), exc_info=exc)
            return True
        self.held.difference_update(r.seq for r in results.rows)
        for row, v in results.dead:
            log.warning("target %s: dlv_%d is dead after %d attempt(s): %s", self.target, row.seq, row.attempts,
                        v.reason, extra={"delivery_id": outbox.delivery_id(row.seq), "target": self.target,
                                         "finding_id": row.finding_id, "event_id": row.event_id})
        if targets:
            self.on_deliveries(targets)
        return True

    async def again(self) -> bool:
        """Write the kept verdicts, oldest first; False (and a longer ``backoff``) while the store still refuses."""
        waiting, self._unrecorded = self._unrecorded, []
        for results in waiting:
            await self._save(results)
        if self._unrecorded:
            self.backoff = min(max(self.backoff * 2, 0.5), 30.0)
            return False
        self.backoff = 0.0
        return True
