"""Pipeline benchmark: signed events in, a local sink out.

    python bench/pipeline.py [--events 2000] [--rate 200] [--backlog 100000] [--small-backlog 10000]
                             [--store sqlite|postgres] [--processes N] [--pg-url URL] [--compare]

1. Latency: events (one finding each) are posted at a steady --rate to `hub serve`, which routes
   every finding.created to a `webhook` target pointing at bench/sink.py. The sink measures
   received -> delivered (sent_at in the event to arrival at the sink): p50 and p99.
2. Throughput: the same with --events posted as fast as possible: deliveries/s.
3. Backlog: the hub is stopped, N pending deliveries are written into its outbox, the hub is
   started again and the time to drain them is measured, with the hub's peak RSS (VmHWM). It runs
   for --small-backlog and --backlog so you can see whether memory grows with the backlog.

--store postgres runs on a fresh schema of --pg-url (default: env HUB_BENCH_PG_URL, else
postgresql://127.0.0.1:5432/test), dropped at the end; --processes N starts N hubs on it, each on its own port:
events are posted round-robin to the N ports, every hub delivers, the sink counts deliveries and duplicates, and
the backlog (written into the store through its own functions) is drained by all N (peak RSS: the largest hub's).
--compare runs SQLite x1 and PostgreSQL x1, x2, x3 one after the other and prints one table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import stores

from hub import signatures
from hub.ids import iso
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
    keys of the pipeline section, YAML flow style). ``db``: a SQLite path or a PostgreSQL URL."""
    return f"""
server: {{host: 127.0.0.1, port: {hub_port}}}
storage: {stores.storage_yaml(db)}
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


class Sink:
    """bench/sink.py in its own process, shared by every configuration of a run (reset between them)."""

    def __init__(self, procs: stores.Procs):
        self.port = free_port()
        self.proc = procs.start([sys.executable, "-m", "uvicorn", "sink:app", "--port", str(self.port),
                                 "--no-access-log", "--log-level", "warning"], cwd=HERE)
        wait_http(f"http://127.0.0.1:{self.port}/stats", self.proc)

    def stats(self, reset: bool = False) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/stats" + ("?reset=1" if reset else ""), timeout=30).json()


class Bench:
    def __init__(self, work: Path, where: str, processes: int, concurrency: int, sink: Sink, procs: stores.Procs):
        self.work, self.where, self.sink, self.procs = work, where, sink, procs
        self.hub_ports = [free_port() for _ in range(processes)]
        self.configs = []
        for k, port in enumerate(self.hub_ports):  # one config per hub: the same but for its port
            config = work / f"hub-{k}.yaml"
            config.write_text(hub_yaml(port, where, "sink", f'{{type: webhook, url: '
                                       f'"http://127.0.0.1:{sink.port}/hook", concurrency: {concurrency}}}'))
            self.configs.append(config)
        self.hubs: list[subprocess.Popen] = []
        self.created = False

    def start_hubs(self) -> None:
        """The first time, the first hub alone until it answers (it creates the store), then the others; later
        (the backlog drains, timed from here) all at once, so that N hubs drain from the start."""
        for k, config in enumerate(self.configs):
            self.hubs.append(self.procs.start([sys.executable, "-m", "hub", "serve", "--config", str(config),
                                               "--log-level", "warning"], stderr=subprocess.DEVNULL))
            if k == 0 and not self.created:
                wait_http(f"http://127.0.0.1:{self.hub_ports[0]}/healthz", self.hubs[0])
        for port, hub in zip(self.hub_ports, self.hubs, strict=True):
            wait_http(f"http://127.0.0.1:{port}/healthz", hub)
        self.created = True

    def stop_hubs(self) -> None:
        self.procs.stop(self.hubs)  # all told at once: a draining hub does not wait for the next to be told
        self.hubs = []

    def stats(self, reset: bool = False) -> dict:
        return self.sink.stats(reset)

    async def post(self, n: int, rate: float | None, offset: int) -> None:
        scheme = signatures.build("standard-webhooks", [SECRET])
        urls = [f"http://127.0.0.1:{port}/hooks/scanner" for port in self.hub_ports]
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16), timeout=30) as client:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    body = orjson.dumps({"id": f"F-{offset + i}", "title": f"finding {offset + i}", "severity": "high",
                                         "host": f"host-{i % 97}", "sent_at": time.time()})
                    headers = {"content-type": "application/json", **scheme.sign(body, time.time(), f"m{offset + i}")}
                    r = await client.post(urls[i % len(urls)], content=body, headers=headers)
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
        """Write n pending deliveries into the outbox of the stopped hubs, through the store's own functions (a
        copy of its SQL here rotted once: it kept inserting a column a migration had moved)."""
        store = stores.open_at(self.where)
        rows = []
        for i in range(n):
            finding = {"id": f"fnd_b{i}", "fingerprint": f"{i:032x}", "source": "scanner", "title": f"backlog {i}",
                       "severity": "high", "tool_id": f"B-{i}", "asset": {"identifier": f"host-{i % 97}"},
                       "status": "open", "raw": {"id": f"B-{i}"}}
            rows.append(outbox.NewDelivery("all", "sink", "finding.created", f"fnd_b{i}", None, f"fnd_b{i}",
                                           f"bk_{n}_{i}", orjson.dumps({"finding": finding, "changes": {}}).decode()))
        try:
            store.write_sync(lambda conn: outbox.insert(conn, rows, iso(time.time())))
        finally:
            stores.close(store)


@dataclass
class Run:
    label: str
    latencies: list[float]
    burst_secs: float
    duplicates: int
    drains: list[tuple[int, float, float, int]]  # size, seconds, peak RSS MiB (largest hub), duplicates


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")


def measure(kind: str, processes: int, args: argparse.Namespace, sink: Sink, work: Path,
            procs: stores.Procs) -> Run:
    folder = work / f"{kind}-{processes}"
    folder.mkdir(parents=True, exist_ok=True)
    with stores.location(kind, folder, args.pg_url) as where:
        bench = Bench(folder, where, processes, args.concurrency, sink, procs)
        try:
            bench.start_hubs()
            n = args.events
            bench.stats(reset=True)
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
            bench.stop_hubs()
            drains = []
            for size in (args.small_backlog, args.backlog):
                bench.backlog(size)
                bench.stats(reset=True)
                t0 = time.perf_counter()
                bench.start_hubs()
                bench.wait_sink(size)
                seconds = time.perf_counter() - t0
                rss = max(peak_rss_mib(hub.pid) for hub in bench.hubs)
                bench.stop_hubs()
                drains.append((size, seconds, rss, bench.stats(reset=True)["duplicates"]))
        finally:
            for hub in bench.hubs:
                procs.kill(hub)  # before the schema is dropped
    return Run(stores.label(kind, processes), lat, burst, dups, drains)


def report_one(run: Run, args: argparse.Namespace) -> None:
    n, lat, drains = args.events, run.latencies, run.drains
    print(f"\nend to end, {n} events at {args.rate:g}/s, one finding each, webhook target, concurrency "
          f"{args.concurrency}, {os.cpu_count()} CPUs" + ("" if run.label == "sqlite x1" else f", {run.label}"))
    print(f"  latency received -> delivered: p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms "
          f"(target p50 <= 50 ms), mean {statistics.mean(lat) * 1000:.1f} ms")
    print(f"  throughput, {n} events posted at once: {n / run.burst_secs:,.0f} deliveries/s (posted and delivered in "
          f"{run.burst_secs:.1f} s; duplicates at the sink: {run.duplicates})")
    print("backlog drain (hub started with N pending deliveries):")
    for size, seconds, rss, dups in drains:
        print(f"  {size:>8,} pending: drained in {seconds:6.1f} s = {size / seconds:,.0f} deliveries/s, "
              f"peak RSS {rss:.0f} MiB" + (f", duplicates at the sink: {dups}" if dups else ""))
    print(f"  memory ratio {drains[-1][0] // drains[0][0]}x backlog: {drains[-1][2] / drains[0][2]:.2f}x peak RSS "
          "(flat is ~1.0)")


def report_table(runs: list[Run], args: argparse.Namespace) -> None:
    print(f"\n{args.events} events at {args.rate:g}/s for latency, {args.events} at once for the burst, backlogs of "
          f"{args.small_backlog:,} and {args.backlog:,}; webhook concurrency {args.concurrency} per hub, "
          f"{os.cpu_count()} CPUs; peak RSS of the largest hub")
    print(f"{'config':<13}{'p50 ms':>8}{'p99 ms':>8}{'burst ev/s':>12}"
          f"{'drain small/s':>15}{'drain large/s':>15}{'RSS MiB':>9}{'dups':>6}")
    for r in runs:
        (small, s_secs, _, s_dups), (large, l_secs, rss, l_dups) = r.drains
        print(f"{r.label:<13}{pct(r.latencies, 0.5):>8.1f}{pct(r.latencies, 0.99):>8.1f}"
              f"{args.events / r.burst_secs:>12,.0f}{small / s_secs:>15,.0f}{large / l_secs:>15,.0f}{rss:>9.0f}"
              f"{r.duplicates + s_dups + l_dups:>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--small-backlog", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    stores.add_arguments(ap)
    args = ap.parse_args()
    configs = stores.configurations(ap, args)
    stores.exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="hub-pipeline-bench-"))
    procs = stores.Procs()
    runs = []
    try:
        sink = Sink(procs)
        for kind, processes in configs:
            if len(configs) > 1:
                print(f"running {stores.label(kind, processes)} ...", flush=True)
            runs.append(measure(kind, processes, args, sink, work, procs))
    finally:
        procs.close()
    for run in runs:
        report_one(run, args)
    if len(runs) > 1:
        report_table(runs, args)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every child is already stopped (main's finally)
        sys.exit(130)
