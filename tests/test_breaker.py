"""The circuit breaker in the real Worker: flaky targets drain, a target back from an outage is drained at once,
a dead one gets breathing room, and the operator sees it (issue 11)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlite_utils import Database

from hub.delivery import Worker
from hub.errors import ConfigError
from hub.ids import iso
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store.schema import migrations
from tests.fakes.flaky import down_until, fails_twice
from tests.support import HubHarness, deliveries_of, force, scanner_source, write_config

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="


def config(tmp_path: Path, **target: Any) -> dict[str, Any]:
    """One webhook target with the hub's defaults except ``target``'s keys."""
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id"})},
        "routes": [{"name": "all", "on": ["finding.created"], "to": ["hook"]}],
        "targets": {"hook": {"type": "webhook", "url": "http://receiver.test/hook", "secret": OUT_SECRET, **target}},
        "pipeline": {"safety_net_secs": 0.5},
    }


@pytest.mark.slow
async def test_a_target_failing_each_message_twice_gets_everything_once_within_40s(tmp_path):
    # The expectation: schedule [1 x 6], no circuit_breaker block (its defaults), 13 deliveries.
    target = fails_twice()
    data = config(tmp_path, retry={"schedule_secs": [1, 1, 1, 1, 1, 1]})
    async with HubHarness.running(tmp_path, data, {"hook": target}, timeout=40.0) as h:
        await h.send([{"id": f"F-{i}", "title": f"finding {i}"} for i in range(13)])
        await h.until(lambda: h.states("hook") == {"done": 13})  # gives up (fails) after 40 s
        assert len(target.accepted) == 13 and set(target.accepted.values()) == {1}  # each exactly once
        assert set(target.seen.values()) == {3}  # no message needed more than the two failures it was given


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


async def drive(worker: Worker, clock: Clock, done: Callable[[], bool], limit: float,
                every: Callable[[], None] = lambda: None) -> None:
    """Run ``worker`` on the fake clock until ``done()`` or ``limit`` fake seconds: each step, then its deliveries,
    then the clock moves on by what the worker asked to wait (a quarter second at most)."""
    end = clock.t + limit
    while not done() and clock.t < end:
        delay = await worker.step()
        if delay is None:
            continue
        if worker._tasks:
            await asyncio.wait(set(worker._tasks))
            continue
        every()
        clock.t += min(delay, 0.25)


@pytest.mark.slow
async def test_a_30s_outage_is_drained_within_seconds_of_the_target_coming_back(tmp_path, caplog):
    # The real Worker and store with every default (retry schedule 5 s, 300 s, ...; no circuit_breaker block),
    # on an injected clock: the hub's clock drives the retry schedule and the breaker alike, so the 30 s outage
    # and the seconds after it are the issue's, not scaled, and the test takes well under a second.
    clock, n = Clock(), 30
    back_at = clock.t + 30
    target = down_until(clock, back_at)
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", config(tmp_path))), clock=clock,
              transports={"hook": target}, scheduler=False)
    await hub.store.start()
    try:
        snaps = [orjson.dumps({"finding": {"id": f"fnd_{i}", "tool_id": f"F-{i}"}, "changes": {}}).decode()
                 for i in range(n)]
        new = [outbox.NewDelivery("all", "hook", "finding.created", f"fnd_{i}", None, f"fnd_{i}", f"key-{i}", s)
               for i, s in enumerate(snaps)]
        await hub.store.write(lambda conn: outbox.insert(conn, new, iso(clock())))
        worker = hub.dispatcher.workers["hook"]
        circuit = hub.metrics.circuit_open.labels("hook")
        seen_open: list[float] = []

        def watch() -> None:
            if clock.t < back_at:
                seen_open.append(circuit._value.get())

        with caplog.at_level(logging.INFO, logger="hub.delivery"):
            await drive(worker, clock, lambda: clock.t >= back_at, 60, watch)
            during = target.requests
            await drive(worker, clock, lambda: len(target.accepted) == n, 60)
        assert target.first_ok is not None and target.first_ok - back_at <= 10  # the drain starts within 10 s
        assert clock.t - back_at <= 10 and len(target.accepted) == n  # ... and ends there too
        assert set(target.accepted.values()) == {1}
        assert outbox.counts(hub.store.conn).get("done") == n
        # breathing room: the attempts that opened it, then a few probes per cooldown (5, 10, 20 s)
        assert during <= 10 + 4 + 3 * 3
        assert max(seen_open) == 1 and circuit._value.get() == 0  # hub_target_circuit_open: 1 while open, then 0
        opened = [r for r in caplog.records if "circuit open" in r.getMessage()]
        closed = [r for r in caplog.records if "circuit closed" in r.getMessage()]
        assert [r.levelno for r in opened] == [logging.WARNING] and [r.levelno for r in closed] == [logging.INFO]
        # no retry was used up by waiting: at most the first attempt and the one due at 5 s, then the last one
        assert max(d["attempts"] for d in deliveries_of(hub.store.conn)) <= 3
    finally:
        await hub.dispatcher.close()
        await hub.store.close()


def breaker_config(tmp_path: Path, block: str) -> Any:
    path = tmp_path / "hub.yaml"
    path.write_text("targets:\n  hook:\n    type: webhook\n    url: https://hooks.internal\n"
                    f"    circuit_breaker: {block}\n")
    return load_config(path, {}).targets["hook"].circuit_breaker


def test_the_old_failures_key_still_works_and_says_what_it_means(tmp_path):
    assert breaker_config(tmp_path, "{failures: 3}").opening() == (3, 1.0)  # 3 attempts in the window, all failed
    assert breaker_config(tmp_path, "{}").opening() == (10, 0.8)
    with pytest.raises(ConfigError) as info:
        breaker_config(tmp_path, "{failures: 3, failure_rate: 0.5}")
    [problem] = [str(p) for p in info.value.problems]
    assert "hub.yaml:5: targets.hook.circuit_breaker.failures: replaced by min_requests and failure_rate" in problem
    with pytest.raises(ConfigError) as info:
        breaker_config(tmp_path, "{cooldown_secs: 60, max_cooldown_secs: 10}")
    assert "max_cooldown_secs: must be at least cooldown_secs" in str(info.value.problems[0])
    assert breaker_config(tmp_path, "{cooldown_secs: 60}").cooldown_secs == 60  # an old config is still valid


def test_a_probe_takes_the_oldest_row_due_or_not_keeps_order_and_its_retries():
    db = Database(memory=True)
    migrations.apply(db)
    conn = db.conn
    t0, later, now = "2026-11-22T10:00:00.000Z", "2026-11-22T11:00:00.000Z", "2026-11-22T10:00:10.000Z"
    outbox.insert(conn, [outbox.NewDelivery("r", "t", "finding.created", f"fnd_{k}", None, f"fnd_{k}", f"k{i}", "{}")
                         for i, k in enumerate((1, 1, 2, 3))], t0)  # dlv_2 is fnd_1's second step
    force(conn, "UPDATE deliveries SET attempts = 2, next_attempt_at = ?, last_attempt_at = ? WHERE seq IN (1, 3)",
          later, t0)  # the retry schedule put them an hour away
    [probe] = outbox.claim_probe(conn, "t", now, later)  # leased until `later`, like any claim
    assert probe.seq == 1 and probe.attempts == 2  # not due: tried, but no retry used up
    [nxt] = outbox.claim_probe(conn, "t", now, later, skip=[1])
    assert nxt.seq == 3  # dlv_2 waits for dlv_1 (same finding), skipped or not
    [due] = outbox.claim_probe(conn, "t", now, later, skip=[1, 3])
    assert due.seq == 4 and due.attempts == 1  # a due row's attempt counts as usual
    assert outbox.claim_probe(conn, "t", now, later, skip=[1, 3, 4]) == []
    outbox.release(conn, [1, 3, 4])
    force(conn, "UPDATE deliveries SET next_attempt_at = ? WHERE seq IN (1, 3)", later)
    force(conn, "UPDATE deliveries SET last_attempt_at = '2026-11-22T09:00:00.000Z' WHERE seq = 3")
    assert outbox.expedite(conn, "t", t0, now) == 1  # dlv_1 failed during the outage; dlv_3 before it began
    due_now = [d["seq"] for d in deliveries_of(conn, state="pending") if d["next_attempt_at"] <= now]
    assert due_now == [1, 2, 4]
