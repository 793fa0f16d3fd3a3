"""Pipeline benchmark: signed events in, a local sink out.

    python bench/pipeline.py [--events 2000] [--rate 200] [--backlog 100000] [--small-backlog 10000]

1. Latency: events (one finding each) are posted at a steady --rate to `hub serve`, which routes
   every finding.created to a `webhook` target pointing at bench/sink.py. The sink measures
   received -> delivered (sent_at in the event to arrival at the sink): p50 and p99.
2. Throughput: the same with --events posted as fast as possible: deliveries/s.
3. Backlog: the hub is stopped, N pending deliveries are written into its outbox, the hub is
   started again and the time to drain them is measured, with the hub's peak RSS (VmHWM). It runs
   for --small-backlog and --backlog so you can see whether memory grows with the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub import signatures
from hub.ids import iso
from hub.store import SqliteStore
from hub.store import deliveries as outbox

HERE = Path(__file__).resolve().parent
SECRET = "whsec_YmVuY2gtc2VjcmV0LWZvci1waXBlbGluZQ=="


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def hub_yaml(hub_port: int, db: str, target: str, target_yaml: str, pipeline: str = "") -> str:
    """A bench hub: one signed generic source, every finding.created routed to one target (``pipeline``: more
    keys of the pipeline section, YAML flow style)."""
    return f"""
server: {{host: 127.0.0.1, port: {hub_port}}}
storage: {{path: {db}}}
sources:
  scanner:
    verify: {{scheme: standard-webhooks, secrets: ["{SECRET}"]}}
    adapter: generic
    options:
      fields: {{title: item.title, severity: item.severity, tool_id: item.id, asset.identifier: item.host}}
routes:
  - {{name: all, on: [finding.created], to: [{target}]}}
targets:
  {target}: {target_yaml}
pipeline: {{safety_net_secs: 1{", " + pipeline if pipeline else ""}}}
"""


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, work: Path, concurrency: int):
        self.work = work
        self.sink_port, self.hub_port = free_port(), free_port()
        self.config = work / "hub.yaml"
        self.config.write_text(hub_yaml(self.hub_port, "./bench.db", "sink", f'{{type: webhook, url: '
                                        f'"http://127.0.0.1:{self.sink_port}/hook", concurrency: {concurrency}}}'))
        self.sink = subprocess.Popen([sys.executable, "-m", "uvicorn", "sink:app", "--port", str(self.sink_port),
                                      "--no-access-log", "--log-level", "warning"], cwd=HERE)
        wait_http(f"http://127.0.0.1:{self.sink_port}/stats", self.sink)
        self.hub: subprocess.Popen | None = None

    def start_hub(self) -> None:
        self.hub = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(self.config),
                                     "--log-level", "warning"], stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.hub_port}/healthz", self.hub)

    def stop_hub(self) -> None:
        if self.hub and self.hub.poll() is None:
            self.hub.terminate()
            self.hub.wait(timeout=30)

    def stats(self, reset: bool = False) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.sink_port}/stats" + ("?reset=1" if reset else ""), timeout=30).json()

    def close(self) -> None:
        self.stop_hub()
        self.sink.terminate()
        self.sink.wait(timeout=10)

    async def post(self, n: int, rate: float | None, offset: int) -> None:
        scheme = signatures.build("standard-webhooks", [SECRET])
        url = f"http://127.0.0.1:{self.hub_port}/hooks/scanner"
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16), timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    body = orjson.dumps({"id": f"F-{offset + i}", "title": f"finding {offset + i}", "severity": "high",
                                         "host": f"host-{i % 97}", "sent_at": time.time()})
                    headers = {"content-type": "application/json", **scheme.sign(body, time.time(), f"m{offset + i}")}
                    r = await client.post(url, content=body, headers=headers)
                    assert r.status_code == 202, r.text

            tasks = []
            start = time.perf_counter()
            for i in range(n):
                if rate:
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)

    def wait_sink(self, count: int, timeout: float = 600) -> float:
        start = time.perf_counter()
        while self.stats()["count"] < count:
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"sink got {self.stats()['count']} of {count}")
            time.sleep(0.05)
        return time.perf_counter() - start

    def backlog(self, n: int) -> None:
        """Write n pending deliveries into the outbox of the stopped hub, through the store's own functions (a
        copy of its SQL here rotted once: it kept inserting a column a migration had moved)."""
        store = SqliteStore(self.work / "bench.db")
        rows = []
        for i in range(n):
            finding = {"id": f"fnd_b{i}", "fingerprint": f"{i:032x}", "source": "scanner", "title": f"backlog {i}",
                       "severity": "high", "tool_id": f"B-{i}", "asset": {"identifier": f"host-{i % 97}"},
                       "status": "open", "raw": {"id": f"B-{i}"}}
            rows.append(outbox.NewDelivery("all", "sink", "finding.created", f"fnd_b{i}", None, f"fnd_b{i}",
                                           f"bk_{n}_{i}", orjson.dumps({"finding": finding, "changes": {}}).decode()))
        store.write_sync(lambda conn: outbox.insert(conn, rows, iso(time.time())))
        store.conn.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--small-backlog", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-pipeline-bench-"))
    bench = Bench(work, args.concurrency)
    try:
        bench.start_hub()
        n = args.events
        asyncio.run(bench.post(min(n, 500), None, 10_000_000))  # warm-up
        bench.wait_sink(min(n, 500))
        bench.stats(reset=True)
        asyncio.run(bench.post(n, args.rate, 0))
        bench.wait_sink(n)
        lat = bench.stats(reset=True)["latencies"]
        t0 = time.perf_counter()
        asyncio.run(bench.post(n, None, n))
        bench.wait_sink(n)
        burst = time.perf_counter() - t0
        dups = bench.stats(reset=True)["duplicates"]
        bench.stop_hub()
        drains = []
        for size in (args.small_backlog, args.backlog):
            bench.backlog(size)
            bench.stats(reset=True)
            t0 = time.perf_counter()
            bench.start_hub()
            bench.wait_sink(size)
            seconds = time.perf_counter() - t0
            drains.append((size, seconds, peak_rss_mib(bench.hub.pid)))  # type: ignore[union-attr]
            bench.stop_hub()
    finally:
        bench.close()
    print(f"\nend to end, {n} events at {args.rate:g}/s, one finding each, webhook target, concurrency "
          f"{args.concurrency}, {os.cpu_count()} CPUs")
    print(f"  latency received -> delivered: p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms "
          f"(target p50 <= 50 ms), mean {statistics.mean(lat) * 1000:.1f} ms")
    print(f"  throughput, {n} events posted at once: {n / burst:,.0f} deliveries/s (posted and delivered in "
          f"{burst:.1f} s; duplicates at the sink: {dups})")
    print("backlog drain (hub started with N pending deliveries):")
    for size, seconds, rss in drains:
        print(f"  {size:>8,} pending: drained in {seconds:6.1f} s = {size / seconds:,.0f} deliveries/s, "
              f"peak RSS {rss:.0f} MiB")
    print(f"  memory ratio {drains[-1][0] // drains[0][0]}x backlog: {drains[-1][2] / drains[0][2]:.2f}x peak RSS "
          "(flat is ~1.0)")


if __name__ == "__main__":
    main()
