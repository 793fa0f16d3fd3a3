"""The gauges read from the store: queue depth, oldest pending age and dead letters per target (on each scrape
of ``/metrics`` and every 15 s)."""

from __future__ import annotations

from collections.abc import Iterable

from hub.ids import parse_iso
from hub.metrics import Metrics
from hub.store import Store
from hub.store import deliveries as outbox


async def refresh(store: Store, metrics: Metrics, targets: Iterable[str], now: float) -> None:
    stats, dead = await store.peek(lambda conn: (outbox.queue_stats(conn), outbox.dead_stats(conn)))
    for name in targets:
        count, oldest = stats.get(name, (0, None))
        metrics.queue_depth.labels(name).set(count)
        metrics.oldest_pending.labels(name).set(max(0.0, now - parse_iso(oldest)) if oldest else 0)
        metrics.dead_letters.labels(name).set(dead.get(name, (0, None))[0])
