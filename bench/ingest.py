"""Intake benchmark: `hub serve` against a bare Starlette route, same client, same run.

    python bench/ingest.py [--seconds 5] [--rounds 3] [--connections 32] [--client auto|wrk|python]

Starts `hub serve` (one hmac-sha256 source, a fresh SQLite file, synchronous=FULL) and a bare Starlette
app with one POST route answering 202, both on uvicorn with the same settings (uvloop, httptools, no
access log). Each round loads the bare app then the hub with signed ~1 KB JSON bodies over loopback,
every one distinct (the hub answers a repeated body as a replay, 200 without storing it),
and the medians are printed with the ratio hub/bare. At the end the hub is SIGKILLed and the events
on disk are counted: every acknowledged (202) event must be there.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

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


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


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
    res = loadgen.run("127.0.0.1", port, requests, connections, seconds)
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


def load_wrk(port: int, seconds: float, connections: int, work: Path) -> Figures:
    bodies = work / "bodies.tsv"  # one "signature TAB body" per line, fresh for each load
    bodies.write_text("".join(f"{signature(b)}\t{b.decode()}\n" for b in unique_bodies(seconds)))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", str(script), f"http://127.0.0.1:{port}/hooks/bench", "--", str(bodies)],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return Figures(rps, p50, p99, total - non2xx, non2xx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = ap.parse_args()
    client = "wrk" if args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")) else "python"

    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    body = make_body(0)
    config = work / "hub.yaml"
    config.write_text("server: {host: 127.0.0.1, port: 8080}\nstorage: {path: ./bench.db}\n"
                      "sources:\n  bench:\n    verify: {scheme: hmac-sha256, header: X-Signature, "
                      f"secrets: [\"{SECRET}\"]}}\n")
    hub_port, bare_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hub = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", str(hub_port),
                            "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bare = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port",
                             str(bare_port), "--no-access-log", "--log-level", "warning"], cwd=HERE, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(hub_port, hub)
        wait_port(bare_port, bare)

        def load(port: int, seconds: float) -> Figures:
            if client == "wrk":
                return load_wrk(port, seconds, args.connections, work)
            return load_python(port, seconds, args.connections)

        load(bare_port, 1)
        load(hub_port, 1)  # warm-up, not counted (its events are stored and counted below)
        results: dict[str, list[Figures]] = {"bare": [], "hub": []}
        for r in range(args.rounds):
            results["bare"].append(load(bare_port, args.seconds))
            results["hub"].append(load(hub_port, args.seconds))
            print(f"round {r + 1}: bare {results['bare'][-1].rps:,.0f} req/s, hub {results['hub'][-1].rps:,.0f} req/s",
                  flush=True)
        hub.send_signal(signal.SIGKILL)
        hub.wait(timeout=10)
        from hub.store import SqliteStore, events

        store = SqliteStore(work / "bench.db")  # after the SIGKILL: what a restarted hub would find
        on_disk = sum(events.counts(store.conn).values())
        store.conn.close()
    finally:
        for proc in (hub, bare):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    med = {k: Figures(*(statistics.median(getattr(f, a) for f in v) for a in ("rps", "p50_ms", "p99_ms")),
                      sum(f.ok for f in v), sum(f.other for f in v)) for k, v in results.items()}
    print(f"\nclient: {client}, {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s, "
          f"body {len(body)} B, {os.cpu_count()} CPUs; medians")
    print(f"{'server':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, label in (("bare", "bare starlette"), ("hub", "hub serve")):
        f = med[name]
        print(f"{label:<16}{f.rps:>10,.0f}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}{f.other:>9}")
    ratio = med["hub"].rps / med["bare"].rps
    print(f"ratio hub/bare: {ratio:.2f} (target >= 0.40); hub p99 {med['hub'].p99_ms:.1f} ms (target <= 15 ms)")
    acked = med["hub"].ok
    print(f"durability: {acked:,} acknowledged in the measured rounds, {on_disk:,} events on disk after SIGKILL "
          f"(warm-up included): {'OK' if on_disk >= acked else 'LOST EVENTS'}")
    shutil.rmtree(work, ignore_errors=True)
    if on_disk < acked:
        sys.exit(1)


if __name__ == "__main__":
    main()
