"""Issue 13, the store: `hub migrate` on both engines, and `hub store copy` from SQLite into an empty PostgreSQL
database with every row, every id and every byte kept, refused when it would merge, lose rows or leak a password."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from click import _termui_impl
from click.testing import CliRunner

from hub import signatures
from hub.cli import main, progress
from hub.store import copy as store_copy
from hub.store import events as event_rows
from hub.store import failures, pg_schema, sync_state
from hub.store import findings as finding_rows
from hub.store.lock import lock_path
from hub.store.postgres import PostgresStore
from hub.store.schema import migrations as sqlite_migrations
from hub.store.sqlite import SqliteStore
from tests.pg import fresh_schema, requires_pg
from tests.support import (
    HMAC_SECRET,
    HubHarness,
    deliveries_of,
    events_of,
    findings_of,
    free_port,
    history_of,
    scanner_source,
    write_config,
)

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="
PASSWORD = "pw-Zq81-never-shown"
COPIED = {"api_tokens", "audit_log", "deliveries", "delivery_attempts", "delivery_snapshots", "events",
          "external_refs", "failure_groups", "finding_history", "findings", "replay_guard", "replay_jobs",
          "sync_state"}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def with_password(url: str) -> str:
    """``url`` with PASSWORD in it (the local server trusts its clients, so the password is carried, not checked)."""
    parts = urlsplit(url)
    user = parts.username or psycopg.connect(url).execute("SELECT current_user").fetchone()[0]
    netloc = f"{user}:{PASSWORD}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def hub_config(tmp_path: Path) -> dict[str, Any]:
    hook = {"type": "webhook", "secret": OUT_SECRET}
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id", "severity": "item.sev",
                                               "asset.identifier": "item.host"}),
                    "se": {"verify": {"scheme": "hmac-sha256", "header": "X-SE-Signature", "secrets": [HMAC_SECRET]}}},
        "routes": [{"name": "all", "on": ["finding.created", "finding.updated"], "to": ["ok", "bad", "down"]},
                   {"name": "raw", "on": ["event.received"], "to": ["ok"]}],
        "targets": {"ok": {**hook, "url": "http://ok.test/hook"},
                    "bad": {**hook, "url": "http://bad.test/hook"},
                    "down": {**hook, "url": "http://down.test/hook", "retry": {"schedule_secs": [3600]}}},
        "pipeline": {"safety_net_secs": 0.5},
    }


def filled_store(tmp_path: Path) -> Path:
    """A SQLite store filled the way a hub fills it: signed events processed into findings, deliveries done,
    dead (a 400) and waiting (a 503), a token issued (with its audit row), and the console's and the ticketing
    connectors' rows written through their query functions. Returns the config file; the hub is closed."""
    transports = {"ok": httpx.MockTransport(lambda r: httpx.Response(200)),
                  "bad": httpx.MockTransport(lambda r: httpx.Response(400, text="no")),
                  "down": httpx.MockTransport(lambda r: httpx.Response(503))}

    async def fill() -> None:
        async with HubHarness.running(tmp_path, hub_config(tmp_path), transports, scheduler=False) as h:
            await h.send([{"id": "A", "title": "Critical one", "sev": "critical", "host": "web-1"},
                          {"id": "B", "title": "High one", "sev": "high", "host": "web-2"}])
            await h.send([{"id": "A", "title": "Critical one, again", "sev": "critical", "host": "web-1"},
                          {"id": "C", "title": "Low \u00e9t\u00e9 \U0001f600", "sev": "low", "host": "web-1"}])
            raw = b'{"note": "an unsigned-timestamp scheme: its digest goes to the replay guard"}'
            signed = signatures.build("hmac-sha256", [HMAC_SECRET], header="X-SE-Signature").sign(raw, 0, "m")
            r = await h.client.post("/hooks/se", content=raw, headers={"content-type": "application/json", **signed})
            assert r.status_code == 202, r.text
            await h.until(lambda: h.states("bad").get("dead", 0) >= 3 and h.states("down").get("pending", 0) >= 3
                          and not h.states("ok").get("pending") and not h.states("ok").get("in_flight"))
            finding = findings_of(h.hub.store.conn, "A")[0]
            now = "2026-12-05T00:00:00Z"

            def console(conn: Any) -> None:
                finding_rows.claim_ref(conn, finding.id, "jira", now)
                finding_rows.link_ref(conn, finding.id, "jira", "SEC-1", "http://jira.test/SEC-1", "Open", now)
                failures.set_state(conn, "bad", "http_4xx", "acknowledged", "token:ops", now)
                dead = {"state": "dead", "target": "bad"}
                failures.create_job(conn, dead, failures.bounds(conn), now, "token:ops", now)
                sync_state.put(conn, "jira:cursor", {"after": "2026-12-04T00:00:00Z"}, now)

            await h.hub.store.write(console)

    asyncio.run(fill())
    config = tmp_path / "hub.yaml"
    code, out = run("tokens", "create", "--config", str(config), "--name", "ops", "--scope", "read")
    assert code == 0, out
    return config


def sqlite_rows(db: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        cols = store_copy.columns(conn, table)
        rows = conn.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
    finally:
        conn.close()
    return cols, sorted(rows, key=repr)


def pg_rows(url: str, table: str, cols: list[str]) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return sorted(conn.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall(), key=repr)


def snapshot(url: str, tables: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in sorted(tables)}


def test_migrate_a_sqlite_file_says_what_is_pending_then_applies_it(tmp_path: Path) -> None:
    db = tmp_path / "new" / "hub.db"
    code, out = run("migrate", "--to", str(db), "--status")
    assert code == 0, out
    total = len(sqlite_migrations._migrations)
    assert "pending  0001_initial" in out and out.splitlines()[-1] == f"{db}: 0 applied, {total} pending"
    assert not db.exists()  # a status writes nothing
    code, out = run("migrate", "--to", str(db))
    assert code == 0 and out.startswith(f"{db}: applied 0001_initial, ") and "0010_console_indexes" in out
    code, out = run("migrate", "--to", str(db))
    assert code == 0 and out.strip() == f"{db}: nothing to apply ({total} migrations applied already)"
    SqliteStore(db).conn.close()  # the store opens on what `hub migrate` left, with nothing more to do
    assert run("migrate", "--to", str(db), "--status")[1].splitlines()[-1] == f"{db}: {total} applied, 0 pending"


def test_migrate_reads_the_store_from_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": "data/hub.db"}})
    code, out = run("migrate", "--config", str(config))
    assert code == 0 and out.startswith(f"{tmp_path / 'data' / 'hub.db'}: applied 0001_initial")


@pytest.mark.parametrize("url", [f"postgresql://ops:{PASSWORD}@127.0.0.1:{{port}}/hub",
                                 f"postgresql://ops:{PASSWORD}@127.0.0.1:{{port}}/hub?nonsense=1",
                                 f"postgresql://ops:{PASSWORD}@127.0.0.1:notaport/hub"])
def test_an_unreachable_database_is_one_line_without_the_password(url: str, tmp_path: Path) -> None:
    url = url.format(port=free_port())
    for args in (["migrate", "--to", url], ["migrate", "--to", url, "--status"]):
        code, out = run(*args)
        assert code == 1 and out.startswith("error: cannot reach the store at ") and len(out.splitlines()) == 1, out
        assert PASSWORD not in out and "Traceback" not in out
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")}})
    SqliteStore(tmp_path / "hub.db").conn.close()
    code, out = run("store", "copy", "--config", str(config), "--to", url)
    assert code == 1 and out.startswith("error: cannot reach the store at ") and PASSWORD not in out, out


def test_copy_refuses_a_store_a_hub_serves_and_a_target_that_is_not_postgres(tmp_path: Path) -> None:
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")}})
    SqliteStore(tmp_path / "hub.db").conn.close()
    code, out = run("store", "copy", "--config", str(config), "--to", str(tmp_path / "other.db"))
    assert code == 2 and "--to takes a postgresql:// URL" in out
    with open(lock_path(tmp_path / "hub.db"), "a+") as held:  # what `hub serve` holds (hub/store/lock.py)
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()}\n")
        held.flush()
        code, out = run("store", "copy", "--config", str(config), "--to", "postgresql://127.0.0.1:1/x")
    assert code == 1 and f"is being served by pid {os.getpid()}: stop the hub before copying" in out, out


@requires_pg
@pytest.mark.slow
def test_two_migrations_at_once_apply_each_migration_once() -> None:
    with fresh_schema() as url:
        procs = [subprocess.Popen([sys.executable, "-m", "hub", "migrate", "--to", url], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert sorted("applied 0010_baseline" in out for out in outs) == [False, True], outs  # one did them all
        with psycopg.connect(url) as conn:
            names = conn.execute("SELECT name, count(*) FROM hub_migrations GROUP BY name").fetchall()
        assert sorted(names) == [(name, 1) for name, _ in pg_schema.MIGRATIONS]
        code, out = run("migrate", "--to", url, "--status")
        names = [name for name, _ in pg_schema.MIGRATIONS]
        assert code == 0 and out.splitlines() == [*(f"applied  {n}" for n in names),
                                                  f"{url}: {len(names)} applied, 0 pending"]


@requires_pg
@pytest.mark.slow
def test_copy_keeps_every_row_id_and_byte_and_refuses_a_second_copy(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "is_terminal", lambda: True)  # the bar, as an operator at a terminal sees it
    monkeypatch.setattr(_termui_impl, "isatty", lambda stream: True)
    config = filled_store(tmp_path)
    db = tmp_path / "hub.db"
    with fresh_schema() as base:
        url = with_password(base)
        code, out = run("migrate", "--to", url)
        assert code == 0 and "applied 0010_baseline" in out and PASSWORD not in out
        code, out = run("store", "copy", "--config", str(config), "--to", url)
        assert code == 0, out
        assert f"from {db} to postgresql://" in out and ":***@" in out, out
        assert PASSWORD not in out
        total = sum(len(sqlite_rows(db, t)[1]) for t in COPIED)
        assert "copying" in out and f"{total}/{total}" in out and f"copied {total} rows from" in out, out

        src = sqlite3.connect(db)
        assert set(store_copy.tables(src)) == COPIED
        src.close()
        largest: dict[str, int] = {}
        for table in sorted(COPIED):
            cols, rows = sqlite_rows(db, table)
            assert rows, f"the filled store has no {table} rows: the test would prove nothing for it"
            assert pg_rows(url, table, cols) == rows, table
            if table in pg_schema.SEQ_TABLES:
                largest[table] = max(int(r[cols.index("seq")]) for r in rows)
        assert any(isinstance(v, bytes) for r in sqlite_rows(db, "events")[1] for v in r)
        assert f"events {len(sqlite_rows(db, 'events')[1])}" in out

        store = PostgresStore(url, pool_size=1)
        try:
            source = SqliteStore(db)  # and the hub reads them on PostgreSQL as it did on SQLite
            try:
                for read in (events_of, deliveries_of, findings_of, history_of):
                    assert read(store.conn) == read(source.conn), read.__name__
            finally:
                source.conn.close()
            new = event_rows.NewEvent("scanner", "2026-12-05T01:00:00Z", None, "application/json", "{}",
                                      b'{"findings": []}', "test")
            ident, _ = store.write_sync(lambda conn: event_rows.insert(conn, new))
            assert event_rows.parse_id(ident) == largest["events"] + 1
            with psycopg.connect(url) as conn:
                for table in pg_schema.SEQ_TABLES:
                    following = conn.execute("SELECT nextval(pg_get_serial_sequence(%s, 'seq'))", (table,))
                    assert following.fetchone()[0] > largest[table], table
        finally:
            asyncio.run(store.close())

        before = snapshot(url, COPIED)
        code, out = run("store", "copy", "--config", str(config), "--to", url)
        assert code == 1 and "already holds rows (" in out and "does not merge" in out and PASSWORD not in out, out
        assert snapshot(url, COPIED) == before


@requires_pg
@pytest.mark.slow
def test_a_copy_that_fails_leaves_the_target_empty(tmp_path: Path) -> None:
    """A row PostgreSQL refuses (a NUL character in text, which SQLite keeps) ends the copy with nothing written,
    even in the tables copied before it."""
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")}})
    store = SqliteStore(tmp_path / "hub.db")
    store.write_sync(lambda conn: event_rows.insert(conn, event_rows.NewEvent(
        "se", "2026-12-05T00:00:00Z", None, None, "{}", b"\x00\xff", "hmac")))
    store.conn.execute("INSERT INTO sync_state (key, value, updated_at) VALUES ('k', ?, 'now')", ("a\x00b",))
    store.conn.close()
    with fresh_schema() as url:
        code, out = run("store", "copy", "--config", str(config), "--to", url)
        assert code == 1 and "failed (copying sync_state), and wrote nothing: " in out and "NUL" in out, out
        assert all(not rows for rows in snapshot(url, COPIED).values())


@requires_pg
@pytest.mark.slow
def test_a_column_the_target_lacks_stops_the_copy_before_a_row_is_written(tmp_path: Path) -> None:
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")}})
    store = SqliteStore(tmp_path / "hub.db")
    store.write_sync(lambda conn: event_rows.insert(conn, event_rows.NewEvent(
        "se", "2026-12-05T00:00:00Z", None, None, "{}", b"{}", "hmac")))
    store.conn.execute("ALTER TABLE events ADD COLUMN later TEXT")  # a migration PostgreSQL has not had
    store.conn.close()
    with fresh_schema() as url:
        code, out = run("store", "copy", "--config", str(config), "--to", url)
        assert code == 1 and "table events has no column later" in out, out
        assert all(not rows for rows in snapshot(url, COPIED).values())


@requires_pg
@pytest.mark.slow
def test_text_in_a_blob_column_and_bytes_in_a_text_column_arrive_as_the_target_types_them(tmp_path: Path) -> None:
    """SQLite stores what it is given whatever the column's type; PostgreSQL's columns hold one type."""
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")}})
    store = SqliteStore(tmp_path / "hub.db")
    store.conn.execute("INSERT INTO events (source, received_at, headers, body, verified_by) VALUES (?, ?, ?, ?, ?)",
                       ("se", "2026-12-05T00:00:00Z", '{"h": "\u00e9"}'.encode(), "caf\u00e9 body", "hmac"))
    store.conn.close()
    with fresh_schema() as url:
        code, out = run("store", "copy", "--config", str(config), "--to", url)
        assert code == 0, out
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT headers, body FROM events").fetchall() == [
                ('{"h": "\u00e9"}', "caf\u00e9 body".encode())]
