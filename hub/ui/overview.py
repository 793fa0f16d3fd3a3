"""The overview page's numbers: per source and per target over the last hour, the queues as they stand, and the
last hour's deliveries per minute as bars of a small SVG chart (drawn here, no script).

Events received and delivery attempts come from the store (hub/store/activity.py). Requests refused and duplicates
are not stored, so they come from the process's counters (since it started, and said so on the page); the circuit
state from the breaker's gauge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from hub.ids import iso, parse_iso
from hub.store import activity
from hub.store import deliveries as delivery_rows
from hub.ui.context import ConsoleContext

WINDOW = 3600
MINUTES = WINDOW // 60
CHART_W, CHART_H, BAR_W = 600, 120, 10


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    kind: str  # ok | failed
    label: str


def by_label(metric: MetricWrapperBase, label: str) -> dict[str, float]:
    """A metric's value per value of one label, summed over its other labels."""
    out: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0) + sample.value
    return out


def overview(ctx: ConsoleContext, now: float) -> dict[str, Any]:
    conn, since = ctx.store.conn, iso(now - WINDOW)
    received = {s.source: s for s in activity.sources(conn, since)}
    rejected, duplicates = by_label(ctx.metrics.rejected, "source"), by_label(ctx.metrics.duplicate, "source")
    sources = [{"name": name, "received": received[name].received if name in received else 0,
                "failed": received[name].failed if name in received else 0,
                "rejected": int(rejected.get(name, 0)), "duplicates": int(duplicates.get(name, 0))}
               for name in sorted({*ctx.settings.config.source_names, *received})]
    attempts = activity.attempts(conn, since)
    queues, dead = delivery_rows.queue_stats(conn), delivery_rows.dead_stats(conn)
    circuit = by_label(ctx.metrics.circuit_open, "target")
    targets = []
    for name in sorted({*ctx.settings.targets, *queues, *dead}):
        depth, oldest = queues.get(name, (0, None))
        mine = [a for a in attempts if a.target == name]
        targets.append({"name": name, "queue": depth, "oldest_secs": now - parse_iso(oldest) if oldest else None,
                        "delivered": sum(a.count for a in mine if a.outcome == "ok"),
                        "failed": sum(a.count for a in mine if a.outcome != "ok"),
                        "dead": dead.get(name, (0, None))[0],
                        "circuit": "open" if circuit.get(name) else "closed"})
    return {"sources": sources, "targets": targets, "bars": chart(attempts, now), "chart_w": CHART_W,
            "chart_h": CHART_H}


def chart(attempts: Iterable[activity.Attempts], now: float) -> list[Bar]:
    """Delivered and failed attempts in each of the last 60 minutes, as stacked bars scaled to the busiest."""
    minutes = [iso(now - (MINUTES - 1 - i) * 60)[:16] for i in range(MINUTES)]
    ok = dict.fromkeys(minutes, 0)
    failed = dict.fromkeys(minutes, 0)
    for a in attempts:
        if a.minute in ok:
            (ok if a.outcome == "ok" else failed)[a.minute] += a.count
    top = max([ok[m] + failed[m] for m in minutes] + [1])
    bars = []
    for i, m in enumerate(minutes):
        x = i * BAR_W
        ok_h, failed_h = CHART_H * ok[m] / top, CHART_H * failed[m] / top
        label = f"{m.replace('T', ' ')} UTC: {ok[m]} delivered, {failed[m]} failed"
        if ok[m]:
            bars.append(Bar(x, CHART_H - ok_h, ok_h, "ok", label))
        if failed[m]:
            bars.append(Bar(x, CHART_H - ok_h - failed_h, failed_h, "failed", label))
    return bars
