"""Helpers for tests: configs written to disk, free ports, `hub serve` as a bounded subprocess, a Hub
running in-process behind an ASGI client (`HubHarness`), and reads of the store through its query functions.

Tests read the store through ``hub/store``'s query functions, so the suite runs against any backend of the
store. The SQL left is here: ``force`` for the few states only SQL can arrange, and ``attempt_rows`` for a
question about the storage layout itself; besides, only the schema tests (tests/test_store.py) run SQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self, cast

import httpx
import orjson
import yaml

from hub import signatures
from hub.app import create_app
from hub.connector import Ref
from hub.models import Finding
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import Conn, SqliteStore, open_store
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store.postgres import PostgresStore
from tests import pg

HMAC_SECRET = "test-secret-for-hmac"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks published test secret


EVERY = 1_000_000  # a listing limit no test comes near: every row


def force(conn: Conn, sql: str, *args: Any) -> None:
    """Arrange a state that only SQL can make (a lease already past, a lock held by another writer, a statement
    that fails): every such test names it, so what ties the suite to SQLite and its schema is easy to find."""
    conn.execute(sql, args)


def attempt_rows(conn: Conn, seq: int) -> int:
    """Attempt-log rows stored for delivery ``seq``, whether or not the delivery row is still there: a prune must
    take them with it, and no query function can see rows whose delivery is gone."""
    return int(conn.execute("SELECT count(*) FROM delivery_attempts WHERE delivery = ?", (seq,)).fetchone()[0])


def findings_of(conn: Conn, tool_id: str | None = None) -> list[Finding]:
    """Every stored finding (or those with this tool id), oldest first (first seen, then id)."""
    found = reversed(finding_rows.search(conn, limit=EVERY)[0])
    return [f for f in found if tool_id is None or f.tool_id == tool_id]


def history_of(conn: Conn) -> list[tuple[str, dict[str, Any]]]:
    """(tool id, history step) of every finding's lifecycle steps, in the order they were written."""
    steps = [(f.tool_id, step) for f in findings_of(conn) for step in finding_rows.history(conn, f.id)]
    return sorted(steps, key=lambda s: int(s[1]["seq"]))


def deliveries_of(conn: Conn, *, target: str | None = None, state: str | None = None
                  ) -> list[dict[str, Any]]:
    """Delivery summaries (``deliveries.listing``'s rows), oldest first."""
    return outbox.listing(conn, target=target, state=state, limit=EVERY)[::-1]


def events_of(conn: Conn, *, source: str | None = None, state: str | None = None
              ) -> list[dict[str, Any]]:
    """Event summaries (``events.listing``'s rows, no bodies), oldest first."""
    return event_rows.listing(conn, source=source, state=state, limit=EVERY)[::-1]


@contextlib.contextmanager
def store_at(path: Path) -> Iterator[Conn]:
    """A connection to the store file at ``path`` (another process may be serving it), closed on exit; under
    HUB_TEST_STORE=postgres, to the test's PostgreSQL schema when no hub made that file (its config was
    base_config's)."""
    store = open_store(pg.current[0] if pg.current and not path.exists() else path)
    try:
        yield store.conn
    finally:
        if isinstance(store, SqliteStore):
            store.conn.close()
        else:
            cast(PostgresStore, store).shutdown()


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def base_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 8080},
        "storage": {"url": pg.current[0]} if pg.current else {"path": str(tmp_path / "hub.db")},
        "sources": {
            "se": {"verify": {"scheme": "hmac-sha256", "header": "X-SE-Signature", "secrets": [HMAC_SECRET]}},
            "sw": {"verify": {"scheme": "standard-webhooks", "secrets": [SW_SECRET]}},
        },
    }
    data.update(extra)
    return data


def scanner_source(fields: Mapping[str, str], *, status: str | None = None) -> dict[str, Any]:
    """The source ``HubHarness.send`` posts to (name it ``scanner``): Standard Webhooks signed with SW_SECRET, the
    generic adapter reading ``body.findings``, finding fields from the item paths in ``fields`` (status from
    ``status``)."""
    options: dict[str, Any] = {"findings": "body.findings", "fields": dict(fields)}
    if status is not None:
        options["status"] = status
    return {"verify": {"scheme": "standard-webhooks", "secrets": [SW_SECRET]}, "adapter": "generic", "options": options}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HubProcess:
    """`hub serve` on 127.0.0.1 and a free port; always killed on exit."""

    def __init__(self, config: Path, port: int | None = None, env: dict[str, str] | None = None):
        self.config, self.port = config, port or free_port()
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> HubProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub", "serve", "--config", str(self.config), "--port", str(self.port),
                 "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"hub serve did not become healthy:\n{self.log.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class LoopbackServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread (for subprocess tests)."""

    def __init__(self, app: Any, port: int | None = None):
        import threading

        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("loopback server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.asynccontextmanager
async def served_in_process(config: Path, **hub_options: Any) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    """A Hub on ``config`` (``hub_options`` go to its constructor: clock, scheduler, transports), started, with a
    client on its ASGI app; closed whatever happens."""
    hub = Hub(load_config(config), **hub_options)
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://t") as c:
            yield hub, c
    finally:
        await hub.aclose()


async def events_settled(hub: Hub, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until no stored event is pending (processed or failed), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while event_rows.counts(hub.store.conn).get("pending"):
        if time.monotonic() > deadline:
            raise AssertionError("events still pending")
        await asyncio.sleep(0.01)


class HubHarness:
    """A Hub started in-process (``HubHarness.running``) with a client on its ASGI app: signed webhooks in,
    store rows out, and a polling ``until`` that says where the deliveries stand when it gives up.

    ``signer`` signs what ``post`` sends (default: Standard Webhooks with ``SW_SECRET``), ``timeout`` is the
    default for ``until``, and ``wait`` makes every ``post`` wait until the hub has ``settled``."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient, *, signer: signatures.Scheme | None = None,
                 timeout: float = 10.0, wait: bool = False):
        self.hub, self.client, self.n = hub, client, 0
        self.signer = signer or signatures.build("standard-webhooks", [SW_SECRET])
        self.timeout, self.wait = timeout, wait

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, tmp_path: Path, data: dict[str, Any],
                      transports: Mapping[str, httpx.AsyncBaseTransport] | None = None, *, scheduler: bool = True,
                      **options: Any) -> AsyncIterator[Self]:
        """Write ``data`` to tmp_path/hub.yaml, start a Hub on it (targets reached through ``transports``),
        yield a harness (``options`` go to its constructor), and close the hub whatever happens."""
        hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)), transports=dict(transports or {}),
                  scheduler=scheduler)
        await hub.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)),
                                         base_url="http://hub.test") as client:
                yield cls(hub, client, **options)
        finally:
            await hub.aclose()

    async def post(self, source: str, body: Any, *, wait: bool | None = None) -> httpx.Response:
        """Sign ``body`` (as JSON) and POST it to /hooks/<source>; it must be accepted (202)."""
        self.n += 1
        raw = orjson.dumps(body)
        headers = {"content-type": "application/json", **self.signer.sign(raw, time.time(), f"msg_{self.n}")}
        r = await self.client.post(f"/hooks/{source}", content=raw, headers=headers)
        assert r.status_code == 202, r.text
        if self.wait if wait is None else wait:
            await self.until(self.settled)
        return r

    async def send(self, findings: list[dict[str, Any]], *, source: str = "scanner",
                   wait: bool | None = None) -> httpx.Response:
        """``{"findings": findings}`` to the source (a generic adapter reading ``body.findings``)."""
        return await self.post(source, {"findings": findings}, wait=wait)

    def states(self, target: str | None = None) -> dict[str, int]:
        """Deliveries by state: of one target, or of all."""
        return outbox.counts(self.hub.store.conn, target)

    def events(self, state: str) -> int:
        return event_rows.counts(self.hub.store.conn).get(state, 0)

    def settled(self, total: int | None = None) -> bool:
        """No event waiting to be processed, no delivery pending or in flight, and at least one delivery
        (exactly ``total`` when given)."""
        states = self.states()
        count = sum(states.values())
        return (self.events("pending") == 0 and not states.get("pending") and not states.get("in_flight")
                and (count > 0 if total is None else count == total))

    def ref(self, target: str, tool_id: str | None = None) -> Ref:
        """The external ref of the finding (the only one, or the one with this tool_id) at a target."""
        [finding] = findings_of(self.hub.store.conn, tool_id)
        found = finding_rows.ref(self.hub.store.conn, finding.id, target)
        assert found is not None, f"finding {finding.id} has no ref at {target}"
        return found

    async def until(self, check: Callable[[], bool], timeout: float | None = None) -> None:  # noqa: ASYNC109
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {limit} s; {self.diagnosis()}")
            await asyncio.sleep(0.02)

    def diagnosis(self, most: int = 20) -> str:
        """Events waiting, deliveries by state, and (target, kind, state, last_error) of some deliveries,
        those not done first."""
        rows = sorted(deliveries_of(self.hub.store.conn), key=lambda d: (d["state"] == "done", d["seq"]))
        shown = [(d["target"], d["kind"], d["state"], d["last_error"]) for d in rows[:most]]
        total = sum(self.states().values())
        more = f" (first {most} of {total})" if total > most else ""
        return (f"{self.events('pending')} event(s) waiting; deliveries {self.states()}{more}: "
                + "".join(f"\n  {row}" for row in shown))


class JumpClock:
    """Wall time that can jump ahead (a hub's clock in tests whose waits, caches or poll runs must move on)."""

    def __init__(self) -> None:
        self.start, self.t0 = time.time(), time.monotonic()

    def __call__(self) -> float:
        return self.start + time.monotonic() - self.t0

    def jump(self, secs: float) -> None:
        self.start += secs
