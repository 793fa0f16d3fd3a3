"""Several `hub serve` processes on one PostgreSQL schema, as real processes on 127.0.0.1: every process receives and
delivers, one leads (processes events, runs the periodic jobs).

What must hold whatever happens to the processes: an acknowledged event (2xx) is stored once, whichever processes
were given it; every finding's deliveries reach the target in the order of its steps (create, then its updates);
nothing stays pending or in flight. A process killed after the target answered and before it recorded the answer
makes its delivery go again when its lease passes (at least once): the sink sees it twice. The tests count those
duplicates and print them (run with ``-s`` or ``-rP`` to read them); they are never filtered out before the checks.

Each process has its own config file, the same but for the target's URL path (``/hook/<process>``), so the sink knows
which process sent each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub import signatures
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store.postgres import PgConn
from tests.pg import fresh_schema, requires_pg
from tests.support import HMAC_SECRET, SW_SECRET, HubProcess, LoopbackServer, free_port, write_config

pytestmark = [pytest.mark.slow, requires_pg]

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="
FIELDS = {"title": "item.title", "tool_id": "item.id"}
GENERIC = {"adapter": "generic", "options": {"findings": "body.findings", "fields": FIELDS},
           "fingerprint": {"use": "tool_id"}}  # the tool's id: an update (a new title) is the same finding
SW = signatures.build("standard-webhooks", [SW_SECRET])


# --- the sink: a webhook target that records what it received, in arrival order ---------------------------------


@dataclass
class Received:
    process: int  # whose config sent it (the URL path)
    delivery: str  # webhook-id: the delivery's idempotency key, the same on every attempt
    tool_id: str
    kind: str
    step: int


@dataclass
class Sink:
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    started: dict[int, int] = field(default_factory=dict)  # requests begun, by process
    finished: dict[int, int] = field(default_factory=dict)  # requests answered, by process

    def app(self) -> Starlette:
        scheme = signatures.build("standard-webhooks", [OUT_SECRET])

        async def hook(request: Request) -> JSONResponse:
            process = int(request.path_params["process"])
            self.started[process] = self.started.get(process, 0) + 1
            body = await request.body()
            scheme.verify({k.lower(): v for k, v in request.headers.items()}, body, time.time())
            if self.delay:
                await asyncio.sleep(self.delay)
            doc = orjson.loads(body)
            title = doc["finding"]["title"]
            self.received.append(Received(process, request.headers["webhook-id"], doc["finding"]["tool_id"],
                                          doc["type"], int(title.rsplit(" v", 1)[1])))
            self.finished[process] = self.finished.get(process, 0) + 1
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook/{process}", hook, methods=["POST"])])

    def duplicates(self) -> dict[str, int]:
        """Deliveries the sink got more than once (at-least-once), by delivery id: how many extra times."""
        counts: dict[str, int] = {}
        for r in self.received:
            counts[r.delivery] = counts.get(r.delivery, 0) + 1
        return {d: n - 1 for d, n in counts.items() if n > 1}


# --- the cluster ---------------------------------------------------------------------------------------------------


def configs(tmp_path: Path, url: str, sink: str, n: int, *, lease: float, concurrency: int = 4,
            reuse_port: bool = False) -> list[Path]:
    """One config per process: the same store, sources and routes; the target's URL path names the process."""
    out = []
    for i in range(n):
        out.append(write_config(tmp_path / f"hub-{i}.yaml", {
            "server": {"host": "127.0.0.1", "port": 8080, "reuse_port": reuse_port},
            "storage": {"url": url, "pool_size": 4},
            "sources": {
                "sw": {"verify": {"scheme": "standard-webhooks", "secrets": [SW_SECRET]}, **GENERIC},
                # no signed id: a replay is known by the digest of what was signed (the replay guard)
                "hm": {"verify": {"scheme": "hmac-sha256", "header": "X-SE-Signature", "secrets": [HMAC_SECRET]},
                       **GENERIC},
            },
            "routes": [{"name": "all", "on": ["finding.created", "finding.updated"], "to": ["hook"]}],
            "targets": {"hook": {"type": "webhook", "url": f"{sink}/hook/{i}", "secret": OUT_SECRET,
                                 "concurrency": concurrency,
                                 "retry": {"schedule_secs": [0.2, 0.5, 1, 1, 1, 1, 1, 1], "jitter": 0}}},
            "pipeline": {"safety_net_secs": 0.5, "claim_lease_secs": lease, "render_process": False},
        }))
    return out


@contextlib.contextmanager
def cluster(tmp_path: Path, n: int, *, lease: float = 3.0, delay: float = 0.0, concurrency: int = 4
            ) -> Iterator[tuple[list[HubProcess], Sink, str]]:
    """``n`` processes on a fresh schema and a sink; every process killed on the way out, whatever happened."""
    sink = Sink(delay)
    with fresh_schema() as url, LoopbackServer(sink.app()) as server:
        procs = [HubProcess(c, free_port()) for c in configs(tmp_path, url, server.url, n, lease=lease,
                                                                  concurrency=concurrency)]
        try:
            for p in procs:
                p.start()
            yield procs, sink, url
        finally:
            for p in procs:
                p.kill()


def db(url: str) -> PgConn:
    return PgConn(psycopg.connect(url, autocommit=True))


def leaders(procs: list[HubProcess]) -> list[int]:
    """The processes whose /readyz says they lead (those that answer)."""
    out = []
    for i, p in enumerate(procs):
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(p.url + "/readyz", timeout=2).json()["leader"]:
                out.append(i)
    return out


# --- the sender: signed events, several steps per finding -----------------------------------------------------------


@dataclass
class Message:
    key: str  # "<tool id>:<step>"
    source: str
    body: bytes
    headers: dict[str, str]


def message(tool_id: str, step: int) -> Message:
    """Step 0 creates the finding, each later step changes its title (an update); half the findings come through
    the Standard Webhooks source (a signed id: the unique key catches a replay), half through HMAC (the replay
    guard's digest does)."""
    body = orjson.dumps({"findings": [{"id": tool_id, "title": f"{tool_id} v{step}"}]})
    if int(tool_id.rsplit("-", 1)[1]) % 2 == 0:
        return Message(f"{tool_id}:{step}", "sw", body, {"content-type": "application/json",
                                                           **SW.sign(body, time.time(), f"msg_{tool_id}_{step}")})
    sig = hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return Message(f"{tool_id}:{step}", "hm", body, {"content-type": "application/json", "x-se-signature": sig})


@dataclass
class Sender:
    """Sends messages round-robin over the processes; a request that fails (a process down) is sent again to the
    next one, as a sender retries. Every third message is also sent to a second process at the same moment."""

    procs: list[HubProcess]
    answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # key -> (status, event id) of 2xx
    errors: int = 0
    turn: Iterator[int] = field(default_factory=itertools.count)

    async def send(self, client: httpx.AsyncClient, msg: Message) -> None:
        n = next(self.turn)
        tries = [self._until_acked(client, msg, n)]
        if n % 3 == 0:
            tries.append(self._until_acked(client, msg, n + 1))
        await asyncio.gather(*tries)

    async def _until_acked(self, client: httpx.AsyncClient, msg: Message, start: int) -> None:
        deadline = time.monotonic() + 30
        for i in itertools.count(start):
            assert time.monotonic() < deadline, f"{msg.key}: no process acknowledged it in 30 s"
            proc = self.procs[i % len(self.procs)]
            try:
                r = await client.post(f"{proc.url}/hooks/{msg.source}", content=msg.body, headers=msg.headers)
            except httpx.TransportError:
                self.errors += 1
                await asyncio.sleep(0.05)
                continue
            if r.status_code in (200, 202):
                self.answers.setdefault(msg.key, []).append((r.status_code, r.json()["id"]))
                return
            assert r.status_code >= 500, r.text  # a 4xx is the hub refusing a valid request: a bug
            self.errors += 1
            await asyncio.sleep(0.05)

    async def finding(self, client: httpx.AsyncClient, tool_id: str, steps: int, start: float, pause: float) -> None:
        """A finding's steps one after another: a step is sent once the previous one was acknowledged."""
        await asyncio.sleep(start)
        for step in range(steps):
            if step:
                await asyncio.sleep(pause)
            await self.send(client, message(tool_id, step))

    async def findings(self, tool_ids: list[str], steps: int, *, stagger: float = 0.0, pause: float = 0.0) -> None:
        """Each finding's steps in order, the findings at once (the i-th starting ``i * stagger`` s in, its steps
        ``pause`` s apart: a load that lasts)."""
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=0)  # a killed process: no stale sockets
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            await asyncio.gather(*(self.finding(client, t, steps, i * stagger, pause) for i, t in enumerate(tool_ids)))


# --- checks ----------------------------------------------------------------------------------------------------------


def settle(url: str, expected: int, timeout: float) -> dict[str, int]:
    """Wait until every event is processed and ``expected`` deliveries are done, nothing pending or in flight."""
    deadline = time.monotonic() + timeout
    conn = db(url)
    try:
        while True:
            events, states = event_rows.counts(conn), outbox.counts(conn)
            if not events.get("pending") and states == {"done": expected}:
                return states
            if time.monotonic() > deadline:
                stuck = [(d["id"], d["state"], d["attempts"], d["last_error"])
                         for d in outbox.listing(conn, limit=1000) if d["state"] != "done"][:10]
                failed = conn.execute("SELECT seq, error FROM events WHERE state = 'failed'").fetchall()
                raise AssertionError(f"not settled in {timeout} s: events {events} (failed: {failed}), deliveries "
                                     f"{states}; {stuck}")
            time.sleep(0.1)
    finally:
        conn.raw.close()


def check(url: str, sender: Sender, sink: Sink, tool_ids: list[str], steps: int, label: str) -> None:
    """Every acknowledged message is one stored event and one delivery, delivered in its finding's order."""
    keys = {f"{t}:{s}" for t in tool_ids for s in range(steps)}
    assert set(sender.answers) == keys
    for key, answers in sender.answers.items():  # the same request, acknowledged twice, is one event
        assert len({ident for _, ident in answers}) == 1, (key, answers)
        assert sum(status == 202 for status, _ in answers) <= 1, (key, answers)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT seq, source, body, state FROM events ORDER BY seq").fetchall()
    stored: dict[str, list[int]] = {}
    for seq, _source, body, state in rows:
        assert state == "processed", (seq, state)
        [item] = orjson.loads(bytes(body))["findings"]
        stored.setdefault(f"{item['id']}:{int(item['title'].rsplit(' v', 1)[1])}", []).append(seq)
    assert {k: len(v) for k, v in stored.items() if len(v) != 1} == {}, "events stored more than once"
    assert set(stored) == keys
    for key, answers in sender.answers.items():
        assert {f"evt_{stored[key][0]}"} == {ident for _, ident in answers}, key

    arrived: dict[str, list[int]] = {}
    for r in sink.received:
        arrived.setdefault(r.tool_id, []).append(r.step)
        assert r.kind == ("finding.created" if r.step == 0 else "finding.updated"), r
    for tool_id in tool_ids:
        got = arrived.get(tool_id, [])
        assert sorted(set(got)) == list(range(steps)), (tool_id, got)
        assert got == sorted(got), f"{tool_id}: its deliveries arrived out of order: {got}"
    dups = sink.duplicates()
    named = {r.delivery: f"{r.tool_id} v{r.step}" for r in sink.received}
    by_process: dict[int, int] = {}
    for r in sink.received:
        by_process[r.process] = by_process.get(r.process, 0) + 1
    print(f"\n[{label}] {len(keys)} events acknowledged ({sum(len(a) for a in sender.answers.values())} 2xx answers, "
          f"{sum(s == 200 for a in sender.answers.values() for s, _ in a)} of them duplicates; {sender.errors} "
          f"requests failed and were sent again), each stored once; {len(sink.received)} requests at the sink "
          f"for {len(keys)} deliveries, by process {dict(sorted(by_process.items()))}; {sum(dups.values())} "
          f"duplicate(s) at the sink" + (f" {sorted(named[d] for d in dups)}: sent again after their lease passed, "
                                         "their process having been killed after sending them and before recording "
                                         "the sink's answer (at least once)" if dups else ""))


# --- the tests -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_processes_share_intake_and_delivery_once_and_in_order(tmp_path: Path, n: int):
    tool_ids, steps = [f"F-{i}" for i in range(16)], 4
    # a sink slow enough (0.1 s an answer, 2 at a time per process) that the leader, whose deliveries start the
    # moment it processes an event, cannot take them all before the others' next look (every second)
    with cluster(tmp_path, n, delay=0.1, concurrency=2) as (procs, sink, url):
        sender = Sender(procs)
        asyncio.run(asyncio.wait_for(sender.findings(tool_ids, steps), 60))
        settle(url, len(tool_ids) * steps, 30)
        check(url, sender, sink, tool_ids, steps, f"{n} processes")
        assert not sink.duplicates()  # nobody died: nothing was sent twice
        assert all(sink.finished.get(i) for i in range(n)), sink.finished  # every process delivered
        assert len(leaders(procs)) == 1


def test_sigkill_mid_load_loses_nothing_and_keeps_order(tmp_path: Path):
    tool_ids, steps, kills = [f"K-{i}" for i in range(24)], 5, 4
    with cluster(tmp_path, 3, lease=2.0, delay=0.3) as (procs, sink, url):
        sender = Sender(procs)
        led: list[int] = []
        cut: list[int] = []  # deliveries the sink was answering for the victim when it was killed

        async def killer() -> None:
            for k in range(kills):
                await asyncio.sleep(1.0)
                led.append(k % len(procs) in await asyncio.to_thread(leaders, procs))
                victim = procs[k % len(procs)]
                cut.append(sink.started.get(k % len(procs), 0) - sink.finished.get(k % len(procs), 0))
                victim.kill()  # SIGKILL: mid-request, mid-claim, mid-processing, whatever it was doing
                await asyncio.sleep(0.3)
                await asyncio.to_thread(victim.start)

        async def run() -> None:  # about 10 s of load; the kills come within it
            await asyncio.gather(sender.findings(tool_ids, steps, stagger=0.25, pause=0.3), killer())

        asyncio.run(asyncio.wait_for(run(), 90))
        settle(url, len(tool_ids) * steps, 40)  # leases of 2 s bring back what the killed processes held
        check(url, sender, sink, tool_ids, steps, f"3 processes, {kills} SIGKILLs ({sum(led)} of the leader, with "
                                                  f"{cut} deliveries being answered by the sink)")
        assert sender.errors > 0  # the kills did land while requests were being sent
        assert len(leaders(procs)) == 1


def test_leadership_moves_when_the_leader_is_killed(tmp_path: Path):
    with cluster(tmp_path, 3) as (procs, sink, url):
        sender = Sender(procs)
        [leader] = leaders(procs)
        asyncio.run(asyncio.wait_for(sender.findings([f"A-{i}" for i in range(6)], 2), 30))
        settle(url, 12, 20)
        procs[leader].kill()
        killed_at = time.monotonic()
        deadline = killed_at + 10
        while not (now_leading := leaders(procs)):
            assert time.monotonic() < deadline, "no process took the lead within 10 s of the leader's death"
            time.sleep(0.1)
        took = time.monotonic() - killed_at
        assert len(now_leading) == 1 and now_leading != [leader]
        survivors = [p for i, p in enumerate(procs) if i != leader]
        after = Sender(survivors, answers=sender.answers)
        asyncio.run(asyncio.wait_for(after.findings([f"B-{i}" for i in range(6)], 2), 30))
        settle(url, 24, 20)  # the events sent after the kill are processed (by the new leader) and delivered
        print(f"\n[leader] process {leader} killed; process {now_leading[0]} led {took:.2f} s later")
        check(url, after, sink, [f"{c}-{i}" for c in "AB" for i in range(6)], 2, "leader moves")


def test_sigterm_with_deliveries_in_flight_exits_and_leaves_nothing_in_flight(tmp_path: Path):
    lease = 60.0  # a row the stopped process left in flight would wait this long: the test would time out first
    tool_ids = [f"T-{i}" for i in range(24)]
    with cluster(tmp_path, 2, lease=lease, delay=1.0, concurrency=3) as (procs, sink, url):
        sender = Sender(procs)
        asyncio.run(asyncio.wait_for(sender.findings(tool_ids, 1), 30))
        victim = 1
        deadline = time.monotonic() + 20
        while sink.started.get(victim, 0) - sink.finished.get(victim, 0) < 2:  # the victim has deliveries in flight
            assert time.monotonic() < deadline, "the process never had deliveries in flight"
            time.sleep(0.02)
        in_flight_then = sink.started[victim] - sink.finished.get(victim, 0)
        proc = procs[victim].proc
        assert proc is not None
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        took = time.monotonic() - stopped
        assert code == 0, procs[victim].log.read_text()
        assert sink.started[victim] == sink.finished.get(victim, 0)  # what it had sent was answered before it exited
        settle(url, len(tool_ids), 30)  # well before any lease: nothing stayed in flight
        check(url, sender, sink, tool_ids, 1, "SIGTERM")
        assert not sink.duplicates()
        print(f"[SIGTERM] process {victim} had {in_flight_then} deliveries in flight at the sink; it exited 0 in "
              f"{took:.2f} s; the rest were delivered by process 0 ({sink.finished.get(0, 0)} in all)")


def test_processes_on_one_port_share_its_connections(tmp_path: Path):
    """server.reuse_port: two processes listen on one host:port and the kernel hands each new connection to one of
    them. Both answer there (one leads, one does not); events sent to that one address are stored once and delivered
    in order; with one process killed, the port still answers."""
    sink = Sink()
    port = free_port()
    with fresh_schema() as url, LoopbackServer(sink.app()) as server:
        procs = [HubProcess(c, port) for c in configs(tmp_path, url, server.url, 2, lease=3.0, reuse_port=True)]
        try:
            for p in procs:
                p.start()
            seen: set[bool] = set()
            deadline = time.monotonic() + 20
            while seen != {True, False}:  # a new connection each time: the second process answers some once it listens
                assert time.monotonic() < deadline, f"one process answered every connection: leader={seen}"
                seen.add(httpx.get(f"{procs[0].url}/readyz", timeout=2).json()["leader"])
            tool_ids, steps = [f"F-{i}" for i in range(8)], 3
            sender = Sender(procs[:1])
            asyncio.run(sender.findings(tool_ids, steps))
            settle(url, len(tool_ids) * steps, timeout=60)
            check(url, sender, sink, tool_ids, steps, "one port, 2 processes")
            procs[1].kill()
            for _ in range(10):
                assert httpx.get(f"{procs[0].url}/healthz", timeout=2).status_code == 200
        finally:
            for p in procs:
                p.kill()


def test_a_shared_port_another_program_holds_is_one_clear_error(tmp_path: Path):
    """reuse_port shares a port among hubs, not with a program that bound it alone: hub serve says so and exits."""
    with fresh_schema() as url, socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        [config] = configs(tmp_path, url, "http://127.0.0.1:9", 1, lease=3.0, reuse_port=True)
        done = subprocess.run([sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        last = done.stderr.strip().splitlines()[-1]
        assert last == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
