"""Store: migrations, event queries, and the group-commit writer's promises."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlite_utils import Database

from hub.errors import StoreError, StoreUnavailableError
from hub.store import SqliteStore, events, sync_state
from hub.store import deliveries as outbox
from hub.store.schema import migrations
from tests.support import force

TABLES = {"events", "findings", "finding_history", "deliveries", "delivery_attempts", "delivery_snapshots",
          "external_refs", "api_tokens", "audit_log", "sync_state"}


def new_event(source: str = "se", key: str | None = None, body: bytes = b"{}") -> events.NewEvent:
    return events.NewEvent(source, "2026-11-22T10:00:00.000Z", key, "application/json", "{}", body, "hmac-sha256")


def test_migrations_create_the_design_tables_and_are_versioned():
    db = Database(memory=True)
    migrations.apply(db)
    assert set(db.table_names()) >= TABLES
    applied = [m.name for m in migrations.applied(db)]
    assert applied == ["0001_initial", "0002_external_refs_by_remote_id", "0003_deliveries_dead_index",
                       "0004_deliveries_by_event", "0005_delivery_snapshots", "0006_delivery_lease",
                       "0007_replay_guard", "0008_event_wait", "0009_failure_groups", "0010_console_indexes",
                       "0011_console_sorts"]
    migrations.apply(db)  # idempotent
    assert [m.name for m in migrations.applied(db)] == applied


def test_snapshots_move_out_of_the_delivery_row_without_loss():
    """A store written before 0005 keeps every pending delivery's snapshot: claimed and shown as before."""
    db = Database(memory=True)
    migrations.apply(db, stop_before="0005_delivery_snapshots")
    conn = db.conn
    conn.execute("INSERT INTO deliveries (route, target, kind, finding_id, event_id, order_key, idempotency_key, "
                 "snapshot, created_at, next_attempt_at) VALUES ('r', 't', 'finding.created', 'fnd_1', NULL, 'fnd_1', "
                 "'k1', '{\"finding\": {\"id\": \"fnd_1\"}}', '2026-11-22T10:00:00.000Z', '2026-11-22T10:00:00.000Z'), "
                 "('r', 't', 'event.received', NULL, 'evt_1', 'evt_1', 'k2', NULL, '2026-11-22T10:00:00.000Z', "
                 "'2026-11-22T10:00:00.000Z')")
    migrations.apply(db)
    assert "snapshot" not in db["deliveries"].columns_dict
    claimed = outbox.claim(conn, "t", "2026-11-22T10:00:01.000Z", 10, "2026-11-22T10:02:01.000Z")
    assert [(r.seq, r.snapshot) for r in claimed] == [(1, '{"finding": {"id": "fnd_1"}}'), (2, None)]
    assert outbox.get(conn, "dlv_1")["snapshot"] == '{"finding": {"id": "fnd_1"}}'  # type: ignore[index]


def test_a_repeated_delivery_key_keeps_the_first_snapshot():
    db = Database(memory=True)
    migrations.apply(db)
    new = [outbox.NewDelivery("r", "t", "finding.created", "fnd_1", None, "fnd_1", "k1", snap)
           for snap in ('{"v": 1}', '{"v": 2}')]
    assert outbox.insert(db.conn, new[:1], "2026-11-22T10:00:00.000Z") == 1
    assert outbox.insert(db.conn, new[1:], "2026-11-22T10:00:00.000Z") == 0
    claimed = outbox.claim(db.conn, "t", "2026-11-22T10:00:01.000Z", 10, "2026-11-22T10:02:01.000Z")
    assert [r.snapshot for r in claimed] == ['{"v": 1}']


def test_event_queries_in_memory():
    db = Database(memory=True)
    migrations.apply(db)
    conn = db.conn
    assert events.insert(conn, new_event(key="k1")) == ("evt_1", False)
    assert events.insert(conn, new_event(key="k1")) == ("evt_1", True)
    assert events.insert(conn, new_event(source="other", key="k1")) == ("evt_2", False)  # keys are per source
    assert events.insert(conn, new_event()) == ("evt_3", False)
    assert events.insert(conn, new_event()) == ("evt_4", False)  # no key: never a duplicate
    listed = events.listing(conn, limit=2)
    assert [r["id"] for r in listed] == ["evt_4", "evt_3"]
    assert [r["id"] for r in events.listing(conn, before=3)] == ["evt_2", "evt_1"]
    assert [r["id"] for r in events.listing(conn, source="other")] == ["evt_2"]
    assert events.get(conn, "evt_2")["source"] == "other"
    assert events.get(conn, "evt_99") is None and events.get(conn, "bogus") is None
    assert events.counts(conn) == {"pending": 4}


def test_store_enables_wal_and_full_sync(tmp_path):
    store = SqliteStore(tmp_path / "x" / "hub.db")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


async def test_concurrent_writes_share_commits_and_resolve_after_commit(tmp_path):
    store = SqliteStore(tmp_path / "hub.db")
    batches: list[int] = []
    store.on_batch = lambda size, secs: batches.append(size)
    await store.start()
    try:
        results = await asyncio.gather(*(store.insert_event(new_event(body=b'{"n": %d}' % i)) for i in range(200)))
        assert sorted(int(r[0][4:]) for r in results) == list(range(1, 201))
        assert sum(batches) == 200 and len(batches) < 200  # grouped
        # Every resolved write is visible to an unrelated connection: it is committed.
        with sqlite3.connect(store.path) as other:
            assert events.counts(other) == {"pending": 200}
    finally:
        await store.close()


async def test_a_failing_job_rolls_back_alone(tmp_path):
    store = SqliteStore(tmp_path / "hub.db")
    await store.start()

    def good(conn: sqlite3.Connection) -> str:
        sync_state.put(conn, "good", {}, "now")
        return "ok"

    def bad(conn: sqlite3.Connection) -> None:
        sync_state.put(conn, "half", {}, "now")
        raise ValueError("adapter blew up")

    try:
        results = await asyncio.gather(store.write(good), store.write(bad), return_exceptions=True)
        assert results[0] == "ok" and isinstance(results[1], ValueError)
        kept = [key for key in ("good", "half") if sync_state.get(store.conn, key) is not None]
        assert kept == ["good"]  # the failing job's own first statement was rolled back too
    finally:
        await store.close()


async def test_operational_errors_become_store_unavailable(tmp_path):
    store = SqliteStore(tmp_path / "hub.db")
    await store.start()
    try:
        with pytest.raises(StoreUnavailableError):
            await store.write(lambda conn: force(conn, "INSERT INTO no_such_table VALUES (1)"))
        assert await store.ping()
    finally:
        await store.close()


async def test_close_commits_what_is_queued(tmp_path):
    store = SqliteStore(tmp_path / "hub.db")
    await store.start()
    futures = [asyncio.ensure_future(store.insert_event(new_event())) for _ in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert all(f.done() and not f.exception() for f in futures)
    with sqlite3.connect(tmp_path / "hub.db") as other:
        assert events.counts(other) == {"pending": 50}
    with pytest.raises(StoreUnavailableError):
        await store.write(lambda conn: None)


def test_write_sync_rolls_back_on_error(tmp_path):
    store = SqliteStore(tmp_path / "hub.db")
    with pytest.raises(RuntimeError):
        store.write_sync(lambda conn: (sync_state.put(conn, "x", {}, "n"), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert sync_state.get(store.conn, "x") is None
    store.write_sync(lambda conn: sync_state.put(conn, "x", {}, "n"))
    assert sync_state.get(store.conn, "x") == {}


def test_an_old_sqlite_is_named_before_anything_is_written(tmp_path, monkeypatch):
    """SQLite before 3.35 lacks RETURNING and DROP COLUMN: say so plainly instead of failing on a claim later."""
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(StoreError, match=r"SQLite is 3\.34\.1; the store needs 3\.35\.0 or newer"):
        SqliteStore(tmp_path / "hub.db")
    assert not (tmp_path / "hub.db").exists()
