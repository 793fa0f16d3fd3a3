"""Intake benchmark: `hub serve` against a bare Starlette route, same client, same run.

    python bench/ingest.py [--seconds 5] [--rounds 3] [--connections 32] [--client auto|wrk|python]
                           [--store sqlite|postgres] [--processes N] [--pg-url URL] [--compare]

Starts `hub serve` (one hmac-sha256 source, a fresh SQLite file, synchronous=FULL) and a bare Starlette
app with one POST route answering 202, both on uvicorn with the same settings (uvloop, httptools, no
access log). Each round loads the bare app then the hub with signed ~1 KB JSON bodies over loopback,
every one distinct (the hub answers a repeated body as a replay, 200 without storing it),
and the medians are printed with the ratio hub/bare. At the end the hub is SIGKILLed and the events
on disk are counted: every acknowledged (202) event must be there.

--store postgres runs the hub on a fresh schema of --pg-url (default: env HUB_BENCH_PG_URL, else
postgresql://127.0.0.1:5432/test), dropped at the end; --processes N starts N hubs on that schema listening on one
port (server.reuse_port: the kernel spreads the client's connections over them, as one host with N processes
would serve). So every configuration has the same client, one wrk thread with the same connections, whose CPU is
the same share of this machine's in every row, and p50/p99 are over all requests. (Each hub on its own port with
a wrk of its own cost twice the client CPU per request, on a machine the hubs and PostgreSQL already saturate, and
gave no percentile over all requests, only the worst of the per-port ones.) Every hub is SIGKILLed before the
count. --compare runs SQLite x1 and PostgreSQL x1, x2, x3 one after the other and prints one table, each row with
its ratio to the bare app and to SQLite x1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen
import stores

SECRET = "bench-secret-0123456789"
HERE = Path(__file__).resolve().parent


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    other: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_body(i: int, run: str = "") -> bytes:
    """A ~1 KB finding event; ``run`` and ``i`` make it unique (the same body again would be a replay: 200)."""
    doc = {"event": "finding.created", "timestamp": "2026-11-22T10:00:00Z",
           "data": {"finding_id": f"fnd_{run}{i:08d}", "severity": "critical", "cvss": 9.8, "cve": "CVE-2024-21412",
                    "software": "OpenSSL 1.0.2", "hostname": "db-prod-02.internal", "ip": "10.0.14.22"}}
    body = json.dumps(doc)
    doc["data"]["description"] = "x" * max(0, 1024 - len(body) - 20)
    return json.dumps(doc).encode()


def signature(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def raw_request(port: int, body: bytes) -> bytes:
    return (f"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"X-Signature: {signature(body)}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def unique_bodies(seconds: float) -> list[bytes]:
    """More distinct bodies than one load can send (20,000/s), fresh for each load: every request is new."""
    run = os.urandom(4).hex()
    return [make_body(i, run) for i in range(int(seconds * 20_000) + 2_000)]


def load_python(port: int, seconds: float, connections: int) -> Figures:
    requests = [raw_request(port, body) for body in unique_bodies(seconds)]
    res = loadgen.run("127.0.0.1", [port], requests, connections, seconds)
    lat = sorted(res.latencies) or [0.0]
    ok = sum(n for s, n in res.statuses.items() if 200 <= s < 300)
    return Figures(res.requests / res.seconds, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, ok,
                   res.requests - ok)


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if match is None:
        raise SystemExit(f"cannot read a latency from wrk: {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


WRK_SCRIPT = """
local reqs, i = {}, 0
init = function(args)
  for line in io.lines(args[1]) do
    local sig, body = line:match("^(%x+)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Signature"] = sig}, body)
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
"""


def _wrk_figures(out: str) -> Figures:
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]  (the distribution,
    # not a "+/- Stdev" cell that ends in 50%)
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Figures(rps, p50, p99, total - non2xx, non2xx)


def load_wrk(port: int, seconds: float, connections: int, work: Path, procs: stores.Procs) -> Figures:
    """One wrk thread, ``connections`` connections, fresh signed bodies (written before it starts)."""
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    bodies = work / "bodies.tsv"  # one "signature TAB body" per line
    bodies.write_text("".join(f"{signature(b)}\t{b.decode()}\n" for b in unique_bodies(seconds)))
    proc = procs.start(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s",
                        str(script), f"http://127.0.0.1:{port}/hooks/bench", "--", str(bodies)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}): {err.strip()}")
    return _wrk_figures(out)


@dataclass
class Run:
    """One configuration's rounds: the bare app's and the hubs' figures, and the events found after SIGKILL."""

    kind: str
    processes: int
    bare: list[Figures]
    hub: list[Figures]
    on_disk: int

    @property
    def label(self) -> str:
        return stores.label(self.kind, self.processes)


def median(figures: list[Figures]) -> Figures:
    return Figures(*(statistics.median(getattr(f, a) for f in figures) for a in ("rps", "p50_ms", "p99_ms")),
                   sum(f.ok for f in figures), sum(f.other for f in figures))


def start_hubs(config: Path, port: int, processes: int, procs: stores.Procs, work: Path,
               hubs: list[subprocess.Popen]) -> None:
    """``processes`` x ``hub serve`` on ``port``, into ``hubs`` as each starts (a failure leaves the started ones there
    to kill); the first alone until it listens (it creates the store), then the others, each until it listens too."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in range(processes):
        with open(work / f"hub-{k}.log", "wb") as log:
            hubs.append(procs.start([sys.executable, "-m", "hub", "serve", "--config", str(config), "--port",
                                     str(port), "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=log))
        if k == 0:
            wait_listening(hubs[0], port, work / "hub-0.log")
    for k, hub in enumerate(hubs[1:], start=1):
        wait_listening(hub, port, work / f"hub-{k}.log")


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``port`` (Linux /proc): with a shared port a connection
    cannot tell which process answered."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(fields[9])
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def wait_listening(proc: subprocess.Popen, port: int, log: Path | None = None, timeout: float = 20.0) -> None:
    """Until ``proc`` listens on ``port`` (a server that exits first, or takes too long, ends the bench)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}{_tail(log)}")
        if listening(proc.pid, port):
            return
        time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start{_tail(log)}")


def _tail(log: Path | None) -> str:
    return f"; its log:\n{log.read_text(errors='replace')[-2000:]}" if log else ""


def measure(kind: str, processes: int, args: argparse.Namespace, load: Callable[[int, float], Figures],
            bare_port: int, work: Path, procs: stores.Procs, prefix: str) -> Run:
    folder = work / f"{kind}-{processes}"
    with stores.location(kind, folder, args.pg_url) as where:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "hub.yaml"
        shared = ", reuse_port: true" if processes > 1 else ""
        config.write_text(f"server: {{host: 127.0.0.1, port: 8080{shared}}}\nstorage: {stores.storage_yaml(where)}\n"
                          "sources:\n  bench:\n    verify: {scheme: hmac-sha256, header: X-Signature, "
                          f"secrets: [\"{SECRET}\"]}}\n")
        port = free_port()
        hubs: list[subprocess.Popen] = []
        try:
            start_hubs(config, port, processes, procs, folder, hubs)
            load(bare_port, 1)
            load(port, 1)  # warm-up, not counted (its events are stored and counted below)
            run = Run(kind, processes, [], [], 0)
            for r in range(args.rounds):
                run.bare.append(load(bare_port, args.seconds))
                run.hub.append(load(port, args.seconds))
                print(f"{prefix}round {r + 1}: bare {run.bare[-1].rps:,.0f} req/s, hub {run.hub[-1].rps:,.0f} req/s",
                      flush=True)
        finally:
            for hub in hubs:
                procs.kill(hub)  # SIGKILL, every hub (also on the way out of a failure: before the schema is dropped)
        run.on_disk = stores.count_events(where)  # after the SIGKILL: what a restarted hub would find
    return run


def report(runs: list[Run], args: argparse.Namespace, client: str, body_size: int) -> bool:
    """Print the table; True if every acknowledged event was found after the SIGKILL."""
    print(f"\nclient: {client}, {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s, "
          f"body {body_size} B, {os.cpu_count()} CPUs; medians")
    if any(r.processes > 1 for r in runs):
        print("N processes: N hubs on one port (server.reuse_port), the same client; p50/p99 over all requests")
    bare = median([f for r in runs for f in r.bare])  # with --compare: over the rounds of every configuration
    hubs = {r.label: median(r.hub) for r in runs}
    if len(runs) == 1 and runs[0].label == stores.label("sqlite", 1):
        names = {runs[0].label: "hub serve"}
    else:
        names = {r.label: f"hub {r.label}" for r in runs}
    base = hubs.get(stores.label("sqlite", 1))
    compare = len(runs) > 1 and base is not None
    print(f"{'server':<20}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
          + (f"{'/bare':>8}{'/sqlite x1':>12}" if compare else ""))
    print(f"{'bare starlette':<20}{bare.rps:>10,.0f}{bare.p50_ms:>9.2f}{bare.p99_ms:>9.2f}{bare.other:>9}")
    for name, f in hubs.items():
        extra = f"{f.rps / bare.rps:>8.2f}{f.rps / base.rps:>12.2f}" if compare and base else ""
        print(f"{names[name]:<20}{f.rps:>10,.0f}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}{f.other:>9}{extra}")
    if not compare:
        f = next(iter(hubs.values()))
        print(f"ratio hub/bare: {f.rps / bare.rps:.2f} (target >= 0.40); hub p99 {f.p99_ms:.1f} ms "
              "(target <= 15 ms)")
    durable = True
    for r in runs:
        acked = hubs[r.label].ok
        ok = r.on_disk >= acked
        durable = durable and ok
        where = "" if len(runs) == 1 else f"{r.label}: "
        print(f"durability: {where}{acked:,} acknowledged in the measured rounds, {r.on_disk:,} events on disk after "
              f"SIGKILL (warm-up included): {'OK' if ok else 'LOST EVENTS'}")
    return durable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    stores.add_arguments(ap)
    args = ap.parse_args()
    configs = stores.configurations(ap, args)
    if max(n for _, n in configs) > args.connections:
        ap.error("--connections must be at least the number of processes")
    client = "wrk" if args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")) else "python"
    stores.exit_on_sigterm()

    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    procs = stores.Procs()

    def load(port: int, seconds: float) -> Figures:
        if client == "wrk":
            return load_wrk(port, seconds, args.connections, work, procs)
        return load_python(port, seconds, args.connections)

    try:
        bare_port = free_port()
        bare = procs.start([sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port",
                            str(bare_port), "--no-access-log", "--log-level", "warning"], cwd=HERE,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        wait_listening(bare, bare_port)
        runs = []
        for kind, processes in configs:
            prefix = "" if len(configs) == 1 else f"{stores.label(kind, processes)}: "
            runs.append(measure(kind, processes, args, load, bare_port, work, procs, prefix))
    finally:
        procs.close()
    durable = report(runs, args, client, len(make_body(0)))
    shutil.rmtree(work, ignore_errors=True)
    if not durable:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every child is already stopped (main's finally)
        sys.exit(130)
