"""Flaky targets drain (issue 11): one in-process hub, DEFAULT settings (retry schedule, circuit breaker,
concurrency), three webhook targets faked by httpx transports (tests/fakes/flaky.py), each given the same
backlog of N pending deliveries when the hub starts:

- ``twice``: fails each message twice (503), then accepts it;
- ``coin``: answers 503 at random half the time (seeded);
- ``outage``: refuses connections for --outage seconds, then accepts everything.

    python bench/flaky.py                     # --messages 50 --outage 30 --max-seconds 420
    python bench/flaky.py --messages 5 --outage 2 --max-seconds 10     # a smoke run for CI: about 10 s

It runs in real time until every target is drained or --max-seconds (the issue measured 7 minutes) and prints,
per target: deliveries done by 36 s, 60 s and the end, when the last one arrived, requests sent, duplicates
(a message accepted twice), how often the circuit opened; for ``outage``: seconds from "back" to the first
delivery and to drained, and the requests sent while it was down (breathing room).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub.ids import iso
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import deliveries as outbox
from tests.fakes.flaky import Flaky, coin, down_until, fails_twice
from tests.support import write_config

SECRET = "whsec_YmVuY2gtc2VjcmV0LWZvci1waXBlbGluZQ=="
TARGETS = ("twice", "coin", "outage")


class Opens(logging.Handler):
    """Counts the worker's "circuit open" warnings per target."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = dict.fromkeys(TARGETS, 0)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for name in TARGETS:
            if message.startswith(f"target {name}: circuit open"):
                self.count[name] += 1


def config(folder: Path) -> dict[str, Any]:
    """Every target with the hub's defaults: no retry, circuit_breaker or concurrency block."""
    return {"storage": {"path": str(folder / "flaky.db")},
            "routes": [{"name": "all", "on": ["finding.created"], "to": list(TARGETS)}],
            "targets": {n: {"type": "webhook", "url": f"http://{n}.test/hook", "secret": SECRET} for n in TARGETS}}


def backlog(n: int) -> list[outbox.NewDelivery]:
    rows = []
    for i in range(n):
        snap = orjson.dumps({"finding": {"id": f"fnd_{i}", "tool_id": f"F-{i}", "title": f"finding {i}"},
                             "changes": {}}).decode()
        rows += [outbox.NewDelivery("all", t, "finding.created", f"fnd_{i}", None, f"fnd_{i}", f"{t}-{i}", snap)
                 for t in TARGETS]
    return rows


def by(times: list[float], t0: float, second: float) -> int:
    return sum(1 for at in times if at - t0 <= second)


async def run(args: argparse.Namespace) -> None:
    opens = Opens()
    logging.getLogger("hub.delivery").addHandler(opens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.monotonic()
        back_at = t0 + args.outage
        fakes: dict[str, Flaky] = {"twice": fails_twice(time.monotonic), "coin": coin(11, time.monotonic),
                                   "outage": down_until(time.monotonic, back_at)}
        hub = Hub(load_config(write_config(folder / "hub.yaml", config(folder)), {}), transports=dict(fakes))
        rows = backlog(args.messages)
        hub.store.write_sync(lambda conn: outbox.insert(conn, rows, iso(time.time())))
        during_outage = 0
        await hub.start()
        try:
            while time.monotonic() - t0 < args.max_seconds:
                if time.monotonic() < back_at:
                    during_outage = fakes["outage"].requests
                if all(len(f.accepted) == args.messages for f in fakes.values()):
                    break
                await asyncio.sleep(0.05)
            ended = time.monotonic() - t0
            states = {name: outbox.counts(hub.store.conn, name) for name in fakes}
        finally:
            await hub.aclose()
    n = args.messages
    print(f"{n} deliveries per target, default settings, ran {ended:.0f} s (limit {args.max_seconds:.0f} s)")
    print(f"{'target':8} {'by 36 s':>8} {'by 60 s':>8} {'at end':>7} {'last at':>9} {'requests':>9} {'dups':>5} "
          f"{'opened':>7}  left")
    for name, fake in fakes.items():
        times = fake.ok_at
        last = f"{times[-1] - t0:.1f} s" if len(fake.accepted) == n else "-"
        dups = sum(c - 1 for c in fake.accepted.values())
        left = {state: v for state, v in states[name].items() if state != "done"}
        print(f"{name:8} {by(times, t0, 36):>8} {by(times, t0, 60):>8} {len(fake.accepted):>7} {last:>9} "
              f"{fake.requests:>9} {dups:>5} {opens.count[name]:>7}  {left or ''}")
    outage = fakes["outage"]
    first = f"{outage.ok_at[0] - back_at:.1f} s" if outage.ok_at else "never"
    drained = f"{outage.ok_at[-1] - back_at:.1f} s" if len(outage.accepted) == n else "not drained"
    print(f"outage of {args.outage:.0f} s: back -> first delivery {first}, back -> drained {drained}; "
          f"{during_outage} requests while it was down")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50, help="pending deliveries per target")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the outage target refuses connections")
    parser.add_argument("--max-seconds", type=float, default=420.0, help="stop after this long, drained or not")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
