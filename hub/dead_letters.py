"""Deliveries that gave up: routed on as ``delivery.dead`` events, and reported hourly to the operator.

``route`` runs inside the transaction that records the verdicts, so a dead letter and its notifications commit
together. ``report`` logs, per target, how many dead letters wait and since when, with the command that lists them;
the Prometheus gauge ``hub_dead_letters`` says the same for alerting.
"""

from __future__ import annotations

import logging

import orjson

from hub.recorder import delivery_key
from hub.routing import Router
from hub.store import Store
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store.conn import Conn
from hub.store.deliveries import ClaimedDelivery

log = logging.getLogger("hub.dead_letters")


class DeadLetters:
    def __init__(self, router: Router):
        self.router = router

    def route(self, conn: Conn, dead: list[tuple[ClaimedDelivery, str]], stamp: str) -> set[str]:
        """``delivery.dead`` outbox rows for the routes that want them; returns the targets given rows."""
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


async def report(store: Store) -> dict[str, tuple[int, str | None]]:
    """Log one line per target with dead letters (the scheduler runs this hourly)."""
    stats = outbox.dead_stats(store.conn)
    for target, (count, oldest) in sorted(stats.items()):
        log.warning("target %s: %d dead letter(s), the oldest since %s; list them with `hub deliveries dead "
                    "--target %s`, replay with `hub deliveries replay --state dead --target %s`", target, count,
                    oldest, target, target)
    return stats
