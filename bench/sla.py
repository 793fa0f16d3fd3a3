"""SLA report benchmark: the report and the CSV export over a store of N findings.

    python bench/sla.py [--findings 100000] [--rounds 3]

Fills a fresh store (synchronous off: the fill is not what is measured) with findings of random severity,
source, two asset tags each, first seen over the last 200 days, 60% resolved within 60 days, the default
SLA days; then times ``hub.store.sla.report`` (no filter, a tag, a source) and ``export_rows`` (every row),
best of --rounds, and prints the figures. Nothing is judged.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub.config import SlaConfig
from hub.ids import iso
from hub.lifecycle import sla_due
from hub.models import SEVERITIES, Finding
from hub.store import SqliteStore, sla
from hub.store import findings as finding_rows

DAY = 86400.0


def fill(store: SqliteStore, n: int, now: float) -> None:
    store.write_sync(lambda conn: _save(conn, n, now))


def _save(conn: sqlite3.Connection, n: int, now: float) -> None:
    rnd, cfg = random.Random(1), SlaConfig()
    for i in range(n):
        first = now - rnd.uniform(0, 200) * DAY
        resolved = min(now - 1, first + rnd.uniform(0, 60) * DAY) if rnd.random() < 0.6 else None
        severity = rnd.choice(SEVERITIES)
        f = Finding.model_validate({
            "id": f"fnd_{i:026d}", "fingerprint": f"fp{i}", "source": rnd.choice(["se", "obexum", "api"]),
            "title": f"finding {i}", "severity": severity, "description": "x" * 400,
            "asset": {"hostname": f"h{i % 500}", "tags": rnd.sample(["prod", "external", "pci", "dev", "db"], 2)},
            "status": "resolved" if resolved else "open", "first_seen": iso(first), "last_seen": iso(first),
            "resolved_at": iso(resolved) if resolved else None, "sla_due_at": sla_due(severity, iso(first), cfg)})
        finding_rows.save(conn, f, None, iso(first))


def best(rounds: int, fn: object) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--findings", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(os.path.join(folder, "hub.db"), synchronous="off")
        fill(store, args.findings, now)
        period = {"since": iso(now - 30 * DAY), "until": iso(now), "now": iso(now)}
        for label, extra in (("report", {}), ("report --tag prod", {"tag": "prod"}),
                             ("report --source se", {"source": "se"})):
            secs = best(args.rounds, lambda extra=extra: sla.report(store.conn, **period, **extra))
            print(f"{label:<20} {args.findings:>8,} findings  {secs * 1000:8.0f} ms")
        secs = best(args.rounds, lambda: sum(1 for _ in sla.export_rows(store.conn, now=iso(now))))
        print(f"{'export (all rows)':<20} {args.findings:>8,} findings  {secs * 1000:8.0f} ms")
        store.conn.close()


if __name__ == "__main__":
    main()
