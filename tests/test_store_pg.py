"""What only PostgreSQL has: several processes on one database at once. Two stores opened on one schema stand for two
hub processes (each has its own pool and connections); threads make them race."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from hub.app import create_app
from hub.errors import StoreError, StoreUnavailableError
from hub.ids import iso
from hub.leader import Leadership
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import open_store, replays, sync_state
from hub.store.postgres import PgConn, PostgresStore, redact_url, translate
from hub.tokens import issue
from tests.pg import fresh_schema, requires_pg
from tests.support import base_config, write_config

pytestmark = requires_pg
T0 = 1_790_000_000.0


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as u:
        yield u


def stores(url: str, n: int) -> list[PostgresStore]:
    return [open_store(url, pool_size=4) for _ in range(n)]  # type: ignore[misc]


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(i)`` on ``n`` threads released at once."""
    gate = threading.Barrier(n)

    def run(i: int) -> Any:
        gate.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_placeholders_become_psycopgs_and_literals_keep_their_text() -> None:
    assert translate("SELECT ? WHERE a LIKE ? AND b = '50% ?' AND c = :name") == \
        "SELECT %s WHERE a ILIKE %s AND b = '50%% ?' AND c = %(name)s"
    assert translate("SELECT x::jsonb ->> 'k'") == "SELECT x::jsonb ->> 'k'"


def test_migrations_started_at_once_apply_once(url: str) -> None:
    opened = race(4, lambda _: open_store(url, pool_size=1))
    try:
        names = opened[0].conn.execute("SELECT name, count(*) FROM hub_migrations GROUP BY name").fetchall()
        assert names and all(n == 1 for _, n in names)
    finally:
        for s in opened:
            s.shutdown()


def test_an_unreachable_server_is_one_sentence_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://hub:s3cret-pw@127.0.0.1:1/hub")
    assert "s3cret-pw" not in str(caught.value) and "hub:***@127.0.0.1:1" in str(caught.value)
    assert redact_url("postgresql://u:p@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"


def test_the_same_event_sent_to_two_processes_at_once_is_stored_once(url: str) -> None:
    a, b = stores(url, 2)
    try:
        ev = event_rows.NewEvent("se", iso(T0), "key-1", "application/json", "{}", b"{}", "hmac-sha256")
        keyed = race(8, lambda i: (a, b)[i % 2].write_sync(lambda c: event_rows.insert(c, ev)))
        digest = replays.digest("se", b"signed")
        unkeyed = event_rows.NewEvent("se", iso(T0), None, "application/json", "{}", b"{}", "hmac-sha256")
        guarded = race(8, lambda i: (a, b)[i % 2].write_sync(
            lambda c: replays.insert_event(c, unkeyed, digest, T0 + 300, T0)))
        for answers in (keyed, guarded):
            assert len({ident for ident, _ in answers}) == 1  # one event, whichever process stored it
            assert sorted(dup for _, dup in answers) == [False] + [True] * 7
        assert event_rows.counts(a.conn) == {"pending": 2}
    finally:
        a.shutdown()
        b.shutdown()


def test_two_processes_claiming_at_once_never_share_a_row_and_keep_each_keys_order(url: str) -> None:
    a, b = stores(url, 2)
    try:
        rows = [outbox.NewDelivery("r", "t", "finding.updated", f"fnd_{k}", None, f"k{k}", f"k{k}-{i}", None)
                for i in range(10) for k in range(12)]
        a.write_sync(lambda c: outbox.insert(c, rows, iso(T0)))
        claimed: list[tuple[int, str]] = []
        lock = threading.Lock()
        overtook: list[str] = []

        def worker(i: int) -> None:
            store = (a, b)[i % 2]
            while True:
                got = store.write_sync(lambda c: outbox.claim(c, "t", iso(T0), 5, iso(T0 + 60)))
                if not got:
                    if outbox.counts(store.conn, "t").get("pending", 0) == 0:
                        return
                    continue
                for r in got:  # no earlier row of its key may still be pending or in flight
                    earlier = store.conn.execute(
                        "SELECT count(*) FROM deliveries WHERE order_key = (SELECT order_key FROM deliveries "
                        "WHERE seq = ?) AND seq < ? AND state <> 'done'", (r.seq, r.seq)).fetchone()[0]
                    if earlier:
                        overtook.append(r.idempotency_key)
                with lock:
                    claimed.extend((r.seq, r.idempotency_key) for r in got)
                results = [outbox.Result(r.seq, "done", None, 200, "ok", "ok", 1.0) for r in got]
                store.write_sync(lambda c, done=results: outbox.record(c, done, iso(T0)))  # type: ignore[misc]

        race(4, worker)
        assert overtook == []
        assert len(claimed) == len(rows) == len({seq for seq, _ in claimed})  # each row once
        assert outbox.counts(a.conn, "t") == {"done": len(rows)}
    finally:
        a.shutdown()
        b.shutdown()


async def test_the_leader_lock_moves_when_its_holder_goes(url: str) -> None:
    changes: list[tuple[str, bool]] = []
    first = Leadership(url, on_change=lambda leads: changes.append(("first", leads)))
    second = Leadership(url, on_change=lambda leads: changes.append(("second", leads)))
    try:
        assert await first.check() is True
        assert await second.check() is False
        assert await first.check() is True  # kept while its session lives
        await first.close()
        assert await second.check() is True
        assert await first.check() is False
        assert changes == [("first", True), ("second", True)]
    finally:
        await first.close()
        await second.close()


async def test_a_write_after_the_server_dropped_the_connections_works_again(url: str) -> None:
    import psycopg

    name = f"hub-test-{id(url)}"
    store = open_store(f"{url}&application_name={name}", pool_size=2)
    try:
        await store.start()
        await store.insert_event(event_rows.NewEvent("se", iso(T0), None, None, "{}", b"x", "token"))
        with psycopg.connect(url, autocommit=True) as admin:  # a restart, as the hub's sessions see it
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE application_name = %s", (name,)).fetchone()[0]
        assert ended >= 2
        await asyncio.sleep(0.1)
        for _ in range(3):  # the pool checks a connection when it is returned broken, and replaces it
            try:
                await store.insert_event(event_rows.NewEvent("se", iso(T0), None, None, "{}", b"y", "token"))
                break
            except StoreError:
                continue
        assert event_rows.counts(store.conn) == {"pending": 2}  # the loop's connection reconnects too
    finally:
        await store.close()


async def test_a_console_session_opened_on_one_process_is_valid_on_another(url: str, tmp_path: Path) -> None:
    """Without console.session_secret each process used to make its own key: behind a load balancer a login on one
    was a stranger to the next. On PostgreSQL the first process makes the key and keeps it in the database."""
    data = base_config(tmp_path)
    data["storage"] = {"url": url}
    config = write_config(tmp_path / "hub.yaml", data)
    hubs = [Hub(load_config(config), scheduler=False) for _ in range(2)]
    try:
        token, _ = hubs[0].store.write_sync(lambda c: issue(c, "ops", ["admin"], T0, None))
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(h)), base_url="http://hub.test")
                   for h in hubs]
        form = await clients[0].get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]*)"', form.text)
        assert csrf is not None
        answer = await clients[0].post("/ui/login", data={"csrf": csrf.group(1), "token": token, "next": "/ui/"})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
        opened = dict(clients[0].cookies)
        clients[1].cookies.update(opened)
        page = await clients[1].get("/ui/")
        assert page.status_code == 200 and "Log out" in page.text, page.text[:300]
        clients[1].cookies.clear()
        clients[1].cookies.update({k: v[:-2] + "xx" for k, v in opened.items()})
        stranger = await clients[1].get("/ui/")
        assert stranger.status_code == 303  # a forged signature still sends to the login page
        for client in clients:
            await client.aclose()
    finally:
        for h in hubs:
            await h.store.close()


async def test_a_failing_write_in_a_group_commit_fails_alone(url: str) -> None:
    """PostgreSQL aborts a transaction at its first failing statement. An intake batch that fails goes again one
    event at a time, and a batch of other writes runs again with a savepoint around every job: the one bad write
    fails and the others commit. A hostile body with a NUL in its headers (PostgreSQL's text refuses it) costs its
    sender an error, not its neighbours; so does a statement the database refuses (a CHECK)."""
    store = open_store(url, pool_size=2)
    await store.start()
    try:
        good = [event_rows.NewEvent("se", iso(T0), f"k{i}", None, "{}", b"x", "hmac") for i in range(20)]
        bad = event_rows.NewEvent("se", iso(T0), "bad", None, '{"x": "\x00"}', b"x", "hmac")
        digest = replays.digest("se", b"guarded")
        guarded = event_rows.NewEvent("se", iso(T0), None, None, "{}", b"g", "hmac")

        def boom(conn: Any) -> None:
            raise ValueError("the job's own error")

        answers = await asyncio.gather(
            *(store.insert_event(ev) for ev in good[:10]), store.insert_event(bad),
            store.insert_event(guarded, replay=(digest, T0 + 300), now=T0), store.write(boom),
            store.insert_event(guarded, replay=(digest, T0 + 300), now=T0),
            *(store.insert_event(ev) for ev in good[10:]), store.insert_event(good[0]), return_exceptions=True)
        failed = [a for a in answers if isinstance(a, BaseException)]
        assert len(failed) == 2 and isinstance(answers[12], ValueError)
        assert "0x00" in str(answers[10]) or "NUL" in str(answers[10]) or "\\u0000" in str(answers[10]), answers[10]
        assert answers[11] == (answers[13][0], False) and answers[13][1] is True  # type: ignore[index]
        assert answers[-1] == (answers[0][0], True)  # type: ignore[index]
        assert event_rows.counts(store.conn) == {"pending": 21}

        def probe(row: int) -> Callable[[Any], Any]:  # store_probe holds one row, id 1 (a CHECK): id 2 is refused
            return lambda conn: conn.execute("INSERT INTO store_probe (id, at, blob) VALUES (?, 0, ?) ON CONFLICT "
                                             "(id) DO UPDATE SET at = excluded.at", (row, b""))

        writes = await asyncio.gather(store.write(probe(1), single_statement=True),
                                      store.write(probe(2), single_statement=True),
                                      store.write(lambda c: sync_state.put(c, "k", {"v": 1}, iso(T0))),
                                      return_exceptions=True)
        assert writes[0] is not None and not isinstance(writes[0], BaseException)
        assert isinstance(writes[1], psycopg.errors.CheckViolation) and writes[2] is None
        assert sync_state.get(store.conn, "k") == {"v": 1}
    finally:
        await store.close()


def test_a_backlog_written_at_once_gets_fresh_statistics_and_a_claim_that_uses_the_index(url: str) -> None:
    """Autovacuum analyzes a table at most once a minute: until then a claim over a backlog written at once ran
    with a plan made for an empty table and read the whole queue per claim. ``refresh_statistics`` (a leader job
    every 15 s) analyzes the stale queue tables; afterwards the claim's plan searches the order index by key."""
    from hub.store.postgres import refresh_statistics

    store = open_store(url, pool_size=2)
    try:
        rows = [outbox.NewDelivery("r", "t", "finding.created", f"fnd_{i}", None, f"fnd_{i}", f"k{i}", None)
                for i in range(5_000)]
        store.write_sync(lambda c: outbox.insert(c, rows, iso(T0)))
        deadline = time.monotonic() + 10  # a backend reports its row counts within a second or so
        while (analyzed := store.write_sync(refresh_statistics)) == [] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert analyzed == ["deliveries"]
        assert store.write_sync(refresh_statistics) == []  # fresh now: nothing to do
        plan = "\n".join(r[0] for r in store.conn.execute(
            "EXPLAIN SELECT d.seq FROM deliveries d WHERE d.target = ? AND d.state = 'pending' AND "
            "d.next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.target = d.target AND "
            "e.order_key = d.order_key AND e.seq < d.seq AND e.state IN ('pending', 'in_flight')) "
            "ORDER BY d.next_attempt_at, d.seq LIMIT 16", ("t", iso(T0))))
        assert "order_key = d.order_key" in plan.split("deliveries_order")[1].split("\n")[1], plan
    finally:
        store.shutdown()


async def test_the_statistics_job_runs_beside_the_group_commit_not_in_it(url: str, tmp_path: Path) -> None:
    """An ANALYZE of a big events table took 240 ms: run inside a group commit, every write of that batch waited for
    it. The leader's statistics job analyzes on a connection of its own, even while the group commit is busy."""
    data = base_config(tmp_path)
    data["storage"] = {"url": url}
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)), scheduler=False)
    await hub.store.start()
    gate = threading.Event()
    try:
        rows = [outbox.NewDelivery("r", "t", "finding.created", f"fnd_{i}", None, f"fnd_{i}", f"k{i}", None)
                for i in range(2_000)]
        with psycopg.connect(url) as raw:  # closed: its row counts reach the statistics at once
            outbox.insert(PgConn(raw), rows, iso(T0))
        busy = asyncio.ensure_future(hub.store.write(lambda c: gate.wait(30)))  # holds the writer thread
        hub.leadership.leader = True
        [job] = [j for j in hub.jobs() if j.id == "statistics"]

        def analyzed() -> bool:
            row = hub.store.conn.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'deliveries' "
                                         "AND schemaname = current_schema()").fetchone()
            return row is not None and row[0] is not None

        deadline = time.monotonic() + 15  # a backend reports its row counts within a second or so
        while not analyzed():
            assert time.monotonic() < deadline, "the statistics job did not analyze while the group commit was busy"
            await asyncio.wait_for(job.run(), timeout=5)
            await asyncio.sleep(0.2)
        assert not busy.done()
    finally:
        gate.set()
        await hub.store.close()


def test_dead_rows_piled_up_in_a_queue_table_are_vacuumed_once(url: str) -> None:
    """Where autovacuum is off (as on this project's CI machines) every step of a delivery left a dead row version
    that the claims walked past until something vacuumed: the leader's job does when they pile up, then leaves the
    table alone for VACUUM_SECS."""
    from hub.store.postgres import vacuum_dead

    store = open_store(url, pool_size=2)
    try:
        rows = [outbox.NewDelivery("r", "t", "finding.created", f"fnd_{i}", None, f"fnd_{i}", f"k{i}", None)
                for i in range(12_000)]
        with psycopg.connect(url) as raw:  # closed: its row counts reach the statistics at once
            outbox.insert(PgConn(raw), rows, iso(T0))
            raw.execute("UPDATE deliveries SET attempts = attempts + 1")  # a step of each: 12,000 dead versions

        def dead() -> int:
            return int(store.conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'deliveries' "
                                          "AND schemaname = current_schema()").fetchone()[0])

        deadline = time.monotonic() + 10  # a backend reports its row counts within a second or so
        while (vacuumed := vacuum_dead(store.conn)) == [] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert vacuumed == ["deliveries"]
        assert dead() < 1_000
        assert vacuum_dead(store.conn) == []  # vacuumed just now
    finally:
        store.shutdown()


async def test_an_intake_answer_that_names_no_event_fails_its_callers_and_inserts_nothing_again(url: str) -> None:
    """The batch statement commits on its own: if its answer ever lacked rows, going one by one would store the
    events twice. Its callers are told to send again instead, and the next batch goes as usual."""
    store = open_store(url, pool_size=2)
    await store.start()
    try:
        assert isinstance(store, PostgresStore) and store.intake is not None
        real = store.intake._insert

        async def short(batch: Any, sql: str) -> list[int | None]:
            return (await real(batch, sql))[:-1]

        store.intake._insert = short  # type: ignore[method-assign]
        burst = [event_rows.NewEvent("se", iso(T0), None, None, "{}", b"x", "hmac") for _ in range(3)]
        answers = await asyncio.gather(*(store.insert_event(ev) for ev in burst), return_exceptions=True)
        assert all(isinstance(a, StoreUnavailableError) for a in answers), answers
        assert event_rows.counts(store.conn) == {"pending": 3}  # stored once each, by the statement; none again
        store.intake._insert = real  # type: ignore[method-assign]
        assert (await store.insert_event(burst[0]))[1] is False
        assert event_rows.counts(store.conn) == {"pending": 4}
    finally:
        await store.close()


async def test_a_hub_built_and_never_started_closes_its_store(url: str, tmp_path: Path) -> None:
    """A command that builds a Hub only to read it (check its jobs, render a page) and closes it must not leave its
    connection pool to the garbage collector: collected in one of the pool's own threads, it cannot join itself."""
    data = base_config(tmp_path)
    data["storage"] = {"url": url}
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)), scheduler=False)
    assert isinstance(hub.store, PostgresStore)
    await hub.aclose()
    assert hub.store.pool.closed
