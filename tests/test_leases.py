"""A claim is a lease: a delivery whose result could not be written is written again (never sent twice), and a
row left in flight by a holder that is gone goes back to pending once its lease has passed, without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.store import SqliteStore
from hub.store import deliveries as outbox
from tests.fakes.webhook import Scripted, receiver
from tests.support import deliveries_of, force, store_at
from tests.test_pipeline import OUT_SECRET, config_data, harness, item, order_ok


async def test_a_failed_result_write_does_not_strand_the_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """The first result write fails (disk I/O error). The verdict is kept and written again: the finding's next
    step, which waits behind that row (order per finding), is delivered too, and nothing is sent twice."""
    real_record = outbox.record
    failures = 0

    def record_failing_once(conn: sqlite3.Connection, results: Any, now: str) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise sqlite3.OperationalError("disk I/O error")
        real_record(conn, results, now)

    monkeypatch.setattr(outbox, "record", record_failing_once)
    app = receiver(OUT_SECRET)
    transport = Scripted(app)
    data = config_data(tmp_path)
    data["routes"][0]["to"] = ["hook"]
    async with harness(tmp_path, data, transport) as h:
        await h.send([item(1)])
        await h.send([item(1, severity="critical")])
        await h.until(lambda: h.states() == {"done": 2})
        assert failures == 1
        assert transport.calls == 2  # each step sent once: the kept verdict was written, not re-sent
        assert order_ok(app.state.received) == {"F-1": ["finding.created", "finding.updated"]}


@pytest.mark.slow
async def test_a_row_in_flight_past_its_lease_goes_back_to_pending_without_a_restart(tmp_path: Path) -> None:
    """A holder that is gone (a lost task, another process) leaves a row in flight: once the lease has passed,
    the row is pending again and delivered, by the running hub."""
    app = receiver(OUT_SECRET)
    transport = Scripted(app, [503])
    data = config_data(tmp_path, schedule=[3600])  # after the 503 the row would wait an hour
    data["routes"][0]["to"] = ["hook"]
    data["pipeline"]["claim_lease_secs"] = 1
    async with harness(tmp_path, data, transport) as h:
        await h.send([item(1)])
        await h.until(lambda: h.states() == {"pending": 1} and transport.calls == 1)
        await h.hub.store.write(lambda conn: force(  # as if a holder claimed it and vanished
            conn, "UPDATE deliveries SET state = 'in_flight', lease_until = '2000-01-01T00:00:00.000000Z'"))
        await h.until(lambda: h.states() == {"done": 1})
        assert [d["finding"]["tool_id"] for d in app.state.received] == ["F-1"]


def test_release_expired_spares_rows_still_held_and_rows_within_their_lease(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    rows = [outbox.NewDelivery("r", "t", "finding.created", f"f{i}", None, f"f{i}", f"k{i}", "{}") for i in range(3)]
    store.write_sync(lambda conn: outbox.insert(conn, rows, "2026-12-01T10:00:00.000000Z"))
    claimed = store.write_sync(lambda conn: outbox.claim(conn, "t", "2026-12-01T10:00:00.000000Z", 2,
                                                         "2026-12-01T10:02:00.000000Z"))
    store.write_sync(lambda conn: outbox.claim(conn, "t", "2026-12-01T10:00:00.000000Z", 1,
                                               "2026-12-01T10:10:00.000000Z"))
    held = {claimed[0].seq}
    released = store.write_sync(lambda conn: outbox.release_expired(conn, "2026-12-01T10:05:00.000000Z", held))
    assert released == {"t": 1}  # the second of the first claim; the first is held, the third's lease runs on
    states = {d["seq"]: d["state"] for d in deliveries_of(store.conn)}
    assert states == {claimed[0].seq: "in_flight", claimed[1].seq: "pending", 3: "in_flight"}


@pytest.mark.slow
async def test_a_result_write_that_fails_for_good_lets_the_rows_go_to_their_lease(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """A failure that is not transient (a bug in recording) would fail every retry alike: the worker does not
    hold the rows forever, the lease puts them back to pending, and the delivery completes (sent twice: at least
    once, as documented)."""
    real_record = outbox.record
    failures = 0

    def record_with_a_bug_once(conn: sqlite3.Connection, results: Any, now: str) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise ValueError("a bug in recording")
        real_record(conn, results, now)

    monkeypatch.setattr(outbox, "record", record_with_a_bug_once)
    app = receiver(OUT_SECRET)
    transport = Scripted(app)
    data = config_data(tmp_path)
    data["routes"][0]["to"] = ["hook"]
    data["pipeline"]["claim_lease_secs"] = 1
    async with harness(tmp_path, data, transport) as h:
        await h.send([item(1)])
        worker = h.hub.dispatcher.workers["hook"]
        # the row is done once its write commits; the worker lets go of it just after that write returns
        await h.until(lambda: h.states() == {"done": 1} and not worker.held)
        assert failures == 1 and not worker.verdicts.waiting
        assert transport.calls == 2  # re-sent once its lease ended; the receiver deduplicates on webhook-id
        assert len(app.state.received) == 1


class Hanging(httpx.AsyncBaseTransport):
    """A target that never answers."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_a_delivery_cut_off_at_shutdown_goes_back_to_pending_at_once(tmp_path: Path) -> None:
    """The hub stops while a target hangs: past the grace the attempt is cut off and its row is pending again
    (its attempt not counted) when the hub has closed, not in flight until its lease ends: with several processes
    on one database another one delivers it at once."""
    data = config_data(tmp_path)
    data["routes"][0]["to"] = ["hook"]
    async with harness(tmp_path, data, Hanging()) as h:
        h.hub.dispatcher.grace = 0.2
        await h.send([item(1)])
        await h.until(lambda: h.states() == {"in_flight": 1})
    with store_at(tmp_path / "hub.db") as conn:
        assert [(d["state"], d["attempts"]) for d in deliveries_of(conn)] == [("pending", 0)]
