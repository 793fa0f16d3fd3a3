"""Retention: old finished traffic leaves the store, everything still needed stays; dead letters are reported."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub import dead_letters, retention
from hub.cli import main
from hub.config import RetentionConfig
from hub.ids import iso
from hub.store import SqliteStore, events
from hub.store import deliveries as outbox
from hub.store import retention as retention_rows
from hub.store import tokens as token_rows
from tests.support import EVERY, attempt_rows, deliveries_of, events_of, write_config

NOW = 1_800_000_000.0  # 2027-01-15
DAY = 86_400.0


class Rows:
    """Deliveries and events written with chosen ages and states, straight into a store."""

    def __init__(self, store: SqliteStore):
        self.store = store

    def event(self, age_days: float, state: str) -> str:
        ev = events.NewEvent("se", iso(NOW - age_days * DAY), None, "application/json", "{}", b"{}", "hmac-sha256")
        ident, _ = self.store.write_sync(lambda c: events.insert(c, ev))
        seq, stamp = events.parse_id(ident) or 0, iso(NOW - age_days * DAY)
        if state == "processed":
            self.store.write_sync(lambda c: events.take(c, seq, stamp))
        elif state == "failed":
            self.store.write_sync(lambda c: events.mark_failed(c, seq, "the adapter failed", stamp))
        return ident

    def delivery(self, age_days: float, state: str, event_id: str | None = None) -> int:
        key = f"k{len(self.delivery_seqs())}"
        stamp = iso(NOW - age_days * DAY)
        new = outbox.NewDelivery("r", "t", "event.received" if event_id else "finding.created",
                                 None if event_id else "fnd_1", event_id, key, key, None if event_id else "{}")

        def job(c: sqlite3.Connection) -> int:
            outbox.insert(c, [new], stamp)
            [added] = outbox.listing(c, limit=1)
            seq = added["seq"]
            outbox.record(c, [outbox.Result(seq, state, None, 200, "ok", "ok", 1.0)], stamp) \
                if state in ("done", "dead") else None
            return int(seq)

        return self.store.write_sync(job)

    def delivery_seqs(self) -> set[int]:
        return {d["seq"] for d in deliveries_of(self.store.conn)}

    def event_ids(self) -> set[str]:
        return {e["id"] for e in events_of(self.store.conn)}

    def attempts_of(self, seq: int) -> int:
        return attempt_rows(self.store.conn, seq)


@pytest.fixture
async def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "hub.db")
    await s.start()
    yield s
    await s.close()


async def test_old_finished_rows_go_and_everything_still_needed_stays(store):
    rows = Rows(store)
    old_done, new_done = rows.delivery(40, "done"), rows.delivery(10, "done")
    old_dead, older_dead = rows.delivery(40, "dead"), rows.delivery(100, "dead")
    old_pending = rows.delivery(40, "pending")  # still to deliver, however old
    old_event, new_event = rows.event(40, "processed"), rows.event(10, "processed")
    needed = rows.event(40, "processed")
    waiting_raw = rows.delivery(40, "dead", event_id=needed)  # a dead raw delivery still reads its event body
    old_failed, older_failed = rows.event(40, "failed"), rows.event(100, "failed")
    old_unprocessed = rows.event(40, "pending")
    assert rows.attempts_of(old_done) == 1

    pruned = await retention.prune(store, RetentionConfig(), NOW)  # 30 / 90 / 30 days

    assert pruned == retention.Pruned(deliveries=2, events=2)
    assert rows.delivery_seqs() == {new_done, old_dead, old_pending, waiting_raw}
    assert older_dead not in rows.delivery_seqs() and rows.attempts_of(old_done) == 0
    assert rows.event_ids() == {new_event, needed, old_failed, old_unprocessed}
    assert old_event not in rows.event_ids() and older_failed not in rows.event_ids()
    assert await retention.prune(store, RetentionConfig(), NOW) == retention.Pruned(0, 0)  # nothing left to do


async def test_null_keeps_forever(store):
    rows = Rows(store)
    rows.delivery(400, "done"), rows.delivery(400, "dead"), rows.event(400, "processed")
    keep_all = RetentionConfig(deliveries_days=None, dead_days=None, events_days=None)
    assert await retention.prune(store, keep_all, NOW) == retention.Pruned(0, 0)
    assert len(rows.delivery_seqs()) == 2 and len(rows.event_ids()) == 1


async def test_walks_range_by_range_and_stops_at_the_first_young_range(store, monkeypatch):
    monkeypatch.setattr(retention_rows, "STEP", 3)
    rows = Rows(store)
    old = [rows.delivery(60, "done") for _ in range(7)]  # three ranges of old rows
    young = [rows.delivery(1, "done") for _ in range(4)]
    steps: list[retention_rows.Step] = []
    real = retention_rows.deliveries_step

    def spy(*args):  # type: ignore[no-untyped-def]
        steps.append(real(*args))
        return steps[-1]

    monkeypatch.setattr(retention_rows, "deliveries_step", spy)
    pruned = await retention.prune(store, RetentionConfig(), NOW)
    assert pruned.deliveries == 7 and rows.delivery_seqs() == set(young)
    assert [s.deleted for s in steps] == [3, 3, 1, 0]  # the last range holds one old row and two young ones ...
    assert steps[-1].next_seq is None  # ... and the walk ends at the first range that starts young
    assert old[0] not in rows.delivery_seqs()


async def test_dead_letters_are_reported_per_target_with_the_commands_to_fix_them(store, caplog):
    rows = Rows(store)
    rows.delivery(2, "dead"), rows.delivery(1, "dead"), rows.delivery(1, "done")

    with caplog.at_level(logging.WARNING, logger="hub.dead_letters"):
        stats = await dead_letters.report(store)
    assert stats == {"t": (2, iso(NOW - 2 * DAY))}
    [line] = caplog.messages
    assert "target t: 2 dead letter(s)" in line and "hub deliveries dead --target t" in line


def test_cli_prune_says_what_went_and_what_is_kept(tmp_path):
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": "hub.db", "retention": {"dead_days": None}}})
    result = CliRunner().invoke(main, ["prune", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("pruned 0 deliveries, 0 events and 0 audit rows "
                                     "(keeping deliveries 30 days, dead forever, events 30 days, audit 365 days)")


def test_retention_settings_are_checked(tmp_path):
    from hub.errors import ConfigError
    from hub.settings import load_config

    path = write_config(tmp_path / "hub.yaml", {"storage": {"retention": {"deliveries_days": 0, "evry_secs": 60}}})
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    text = "\n".join(str(p) for p in info.value.problems)
    assert "storage.retention.deliveries_days" in text and 'did you mean "every_secs"' in text


def test_the_hub_schedules_retention_and_the_dead_letter_report(tmp_path):
    from hub.runtime import Hub
    from hub.scheduler import build_scheduler
    from hub.settings import load_config

    config = load_config(write_config(tmp_path / "hub.yaml", {"storage": {"retention": {"every_secs": 600}}}), {})
    jobs = {job.id: job for job in build_scheduler(Hub(config, scheduler=False).jobs()).get_jobs()}
    assert jobs["retention"].trigger.interval.total_seconds() == 600
    assert jobs["dead-letters"].trigger.interval.total_seconds() == 3600


async def test_audit_rows_older_than_audit_days_go_range_by_range(store, monkeypatch):
    """Anonymous 401s write audit rows; without a window the table only grew."""
    monkeypatch.setattr(retention_rows, "STEP", 2)
    for age in (400, 380, 366, 364, 10):
        store.write_sync(lambda c, a=age: token_rows.audit(c, iso(NOW - a * DAY), "anonymous", "findings.list", None,
                                                         "401 invalid_token", {}, "203.0.113.7"))
    pruned = await retention.prune(store, RetentionConfig(), NOW)  # audit_days 365 by default
    assert pruned.audit == 3
    left = [r["at"] for r in token_rows.audit_listing(store.conn, limit=EVERY)[::-1]]
    assert left == [iso(NOW - 364 * DAY), iso(NOW - 10 * DAY)]
    assert (await retention.prune(store, RetentionConfig(audit_days=None), NOW + 1000 * DAY)).audit == 0
    assert (await retention.prune(store, RetentionConfig(audit_days=5), NOW)).audit == 2
