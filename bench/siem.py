"""SIEM benchmark: a backlog forwarded to a fake Splunk HEC and a fake Elasticsearch bulk endpoint, beside a ceiling.

    python bench/siem.py [--hec-events 100000] [--bulk-events 50000] [--batch 1000] [--in-flight 4] [--only hec|bulk]
                         [--render-process auto|on|off]

bench/siem_sink.py (uvicorn, its own process) fakes both endpoints: it checks the auth header, gunzips,
counts every envelope / bulk action, answers like the vendor (HEC code 0; a bulk response with one item
per action) and keeps the ids it saw (HEC: ``fields.idempotency_key``; bulk: ``_id``) to count duplicates.
For each vendor:

1. Hub: a config with one target of that type (``batch: {max_events: --batch, in_flight: --in-flight,
   compression: true}`` and the type's default ``max_bytes``) and a route ``finding.created -> siem`` passes
   ``hub check-config``; N pending deliveries (full finding snapshots, ~200-character descriptions) are
   written into the outbox of a stopped hub; ``hub serve`` starts and the clock runs until the fake has
   counted N events. "hub total" includes the hub's start-up (process start to last request received);
   "hub drain" runs from the first request the fake received to the last. Peak RSS is the hub's VmHWM
   plus its child processes' (the render process), and hub CPU counts them too;
   afterwards every outbox row must be done.
2. Ceiling: the same N findings are rendered ahead of time by the hub's own connector (``encode``), cut into
   the same requests (claims of max_events, split by max_bytes) and gzip'd at the same level; a separate
   process loads them and posts them with one plain ``httpx.AsyncClient`` (uvloop when installed, as uvicorn
   uses for the hub), ``in_flight`` requests at once, timed from the first post to the last answer. Its
   peak RSS is its VmHWM (it holds every pre-built body).

Ratio = hub drain events/s / ceiling events/s (target >= 0.5); HEC target: >= 20,000 events/s (hub total).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline import free_port, hub_yaml, peak_rss_mib, wait_http

HERE = Path(__file__).resolve().parent
HEC_TOKEN, API_KEY = "bench-hec-token", "YmVuY2g6a2V5"
TARGETS = {"hec": ("splunk_hec", f'{{token: "{HEC_TOKEN}"}}', "security"),
           "bulk": ("elastic", f'{{api_key: "{API_KEY}"}}', "logs-findings-default")}
WORDS = ("outdated", "library", "allows", "remote", "attackers", "to", "execute", "arbitrary", "code", "via",
         "crafted", "requests", "against", "the", "exposed", "service", "endpoint", "when", "input", "validation")


@dataclass
class Result:
    vendor: str
    n: int
    hub_total: float  # seconds, process start -> last request at the fake
    hub_drain: float  # seconds, first -> last request at the fake
    hub_rss: float
    hub_cpu: float
    hub_stats: dict[str, Any]
    done: int
    ceiling: float
    ceiling_rss: float
    ceiling_cpu: float
    ceiling_stats: dict[str, Any]


def config_text(vendor: str, sink_port: int, hub_port: int, batch: int, in_flight: int, render: str = "auto") -> str:
    kind, auth, index = TARGETS[vendor]  # max_bytes left out: the type's own default applies
    return hub_yaml(hub_port, "./siem.db", "siem", f'{{type: {kind}, url: "http://127.0.0.1:{sink_port}", '
                    f'auth: {auth}, index: {index}, batch: {{max_events: {batch}, timeout_secs: 1, '
                    f'in_flight: {in_flight}, compression: true}}}}',
                    "" if render == "auto" else f"render_process: {'true' if render == 'on' else 'false'}")


def findings(n: int) -> list[tuple[str, dict[str, Any]]]:
    """(idempotency key, finding snapshot as the pipeline stores it) for n distinct findings."""
    from hub.models import SEVERITIES, Finding
    from hub.recorder import delivery_key

    base = Finding(source="scanner", cvss_score=None, scanner="BenchScanner", cwe=["CWE-79"], rule_id="BENCH-001",
                   remediation="Upgrade the package to the latest release.", status="open",
                   first_seen="2026-11-22T10:00:00.000Z", last_seen="2026-11-22T10:00:00.000Z").model_dump(mode="json")
    out = []
    for i in range(n):
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(32))
        f = {**base, "id": f"fnd_s{i:08d}", "fingerprint": f"{i:032x}", "tool_id": f"SC-{i}",
             "title": f"Vulnerable component {i % 500} on host-{i % 997}", "severity": SEVERITIES[i % 5],
             "cvss_score": round(1 + (i % 90) / 10, 1), "cve": [f"CVE-2025-{10000 + i % 50000}"],
             "description": f"Finding {i}: {words}"[:200], "references": [f"https://nvd.nist.gov/{i % 50000}"],
             "asset": {**base["asset"], "identifier": f"ast_{i % 997}", "hostname": f"host-{i % 997}.internal",
                       "ip": f"10.0.{i % 250}.{i % 200 + 1}", "environment": "production", "tags": ["bench"]},
             "raw": {"id": f"SC-{i}", "host": f"host-{i % 997}"}}
        out.append((delivery_key("all", "siem", f"step:{i}"), f))
    return out


def write_backlog(db: Path, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """N pending finding.created deliveries straight into the outbox (the hub is stopped)."""
    from hub.ids import iso
    from hub.store import SqliteStore
    from hub.store import deliveries as outbox

    store = SqliteStore(db)
    new = [outbox.NewDelivery("all", "siem", "finding.created", f["id"], None, f["id"], key,
                              orjson.dumps({"finding": f, "changes": {}}).decode()) for key, f in rows]
    store.write_sync(lambda conn: outbox.insert(conn, new, iso(time.time())))
    store.conn.close()


def build_batches(config: Path, rows: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The requests the hub would send, rendered by its own connector: claims of max_events, split by max_bytes."""
    from connectors.splunk_hec import GZIP_LEVEL
    from hub.connector import Item
    from hub.connector.batching import encode_all, gzip_body, split
    from hub.registry import connector_class
    from hub.settings import load_config

    cfg = load_config(config)
    target = cfg.targets["siem"]
    conn: Any = connector_class(target.type)("siem", target, cfg.mappings["siem"], cfg.resolve("."))
    hec = target.type == "splunk_hec"
    batch = target.batch  # type: ignore[attr-defined]
    items = [Item(f"dlv_{seq}", "finding.created", key, "all", "siem", f, None, {}, None, 1)
             for seq, (key, f) in enumerate(rows, 1)]
    bodies, counts = [], []
    for start in range(0, len(items), batch.max_events):
        encoded, failed = encode_all(items[start:start + batch.max_events], conn.encode)
        assert not failed, failed
        for chunk in split(encoded, batch.max_events, batch.max_bytes, separator=1 if hec else 0):
            body = (b"\n" if hec else b"").join(e.data for e in chunk)
            bodies.append(gzip_body(body, GZIP_LEVEL) if hec else gzip_body(body))
            counts.append(len(chunk))
    if hec:
        url, headers = conn.base_url + "/services/collector/event", {**conn.headers, "content-encoding": "gzip"}
    else:
        url, headers = conn.bulk_url, conn.outbound(b"", True).headers
    return {"url": url, "headers": headers, "bodies": bodies, "counts": counts, "hec": hec}


def post_batches(path: str, in_flight: int) -> None:
    """Ceiling child: post the pre-built requests, in_flight at once; print JSON {start, end, rss_mib, cpu}."""
    with open(path, "rb") as fh:
        plan = pickle.load(fh)
    queue = list(reversed(plan["bodies"]))

    async def run() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            async def worker() -> None:
                while queue:
                    r = await client.post(plan["url"], content=queue.pop(), headers=plan["headers"])
                    answer = r.json()
                    if r.status_code != 200 or (answer.get("code") != 0 if plan["hec"] else answer["errors"]):
                        raise SystemExit(f"ceiling: HTTP {r.status_code} {r.text[:300]}")

            start = time.time()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            return start, time.time()

    try:
        import uvloop
        start, end = uvloop.run(run())
    except ImportError:
        start, end = asyncio.run(run())
    cpu = os.times()
    print(orjson.dumps({"start": start, "end": end, "rss_mib": peak_rss_mib(os.getpid()),
                        "cpu": cpu.user + cpu.system}).decode())


def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Child processes, and theirs (the hub's render process and multiprocessing's resource tracker)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *descendants(int(child))]
    return out


class Bench:
    def __init__(self, work: Path, args: argparse.Namespace):
        self.work, self.args = work, args
        self.port = free_port()
        env = {**os.environ, "SIEM_SINK_HEC_TOKEN": HEC_TOKEN, "SIEM_SINK_API_KEY": API_KEY}
        self.sink = subprocess.Popen([sys.executable, "-m", "uvicorn", "siem_sink:app", "--host", "127.0.0.1", "--port",
                                      str(self.port), "--no-access-log", "--log-level", "warning"], cwd=HERE, env=env)
        wait_http(f"http://127.0.0.1:{self.port}/stats", self.sink)
        self.hub: subprocess.Popen[bytes] | None = None

    def stats(self, reset: bool = False) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/stats" + ("?reset=1" if reset else "")
        return httpx.get(url, timeout=30).json()  # type: ignore[no-any-return]

    def wait_events(self, n: int, proc: subprocess.Popen[bytes], log: Path, stall: float = 60) -> dict[str, Any]:
        """Until the fake counted n events; fails if proc exits or nothing arrives for ``stall`` seconds."""
        last, since = -1, time.monotonic()
        while (stats := self.stats())["events"] < n:
            if stats["events"] != last:
                last, since = stats["events"], time.monotonic()
            if proc.poll() is not None or time.monotonic() - since > stall:
                tail = "".join(log.read_text(errors="replace").splitlines(True)[-20:])
                raise SystemExit(f"stalled at {stats['events']:,} of {n:,} events (hub exit code {proc.poll()}); "
                                 f"the hub's log ends:\n{tail}")
            time.sleep(0.05)
        return stats

    def run(self, vendor: str, n: int) -> Result:
        a, vdir = self.args, self.work / vendor
        vdir.mkdir()
        config = vdir / "hub.yaml"
        config.write_text(config_text(vendor, self.port, free_port(), a.batch, a.in_flight, a.render_process))
        check = subprocess.run([sys.executable, "-m", "hub", "check-config", str(config)], check=False,
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise SystemExit(f"hub check-config failed:\n{check.stdout}{check.stderr}")
        rows = findings(n)
        write_backlog(vdir / "siem.db", rows)
        plan = build_batches(config, rows)
        del rows
        with open(vdir / "batches.pkl", "wb") as fh:
            pickle.dump(plan, fh)
        del plan
        self.stats(reset=True)
        with open(vdir / "hub.log", "wb") as log:
            t0 = time.time()
            self.hub = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(config),
                                         "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
            try:
                hub_stats = self.wait_events(n, self.hub, vdir / "hub.log")
                time.sleep(0.2)  # let the hub record the last verdicts
                family = [self.hub.pid, *descendants(self.hub.pid)]  # the render process counts as the hub's
                rss, cpu = sum(peak_rss_mib(p) for p in family), sum(cpu_secs(p) for p in family)
            finally:
                self.stop_hub()
        hub_stats = self.stats(reset=True)
        from hub.store import SqliteStore
        from hub.store import deliveries as outbox

        store = SqliteStore(vdir / "siem.db")
        done = outbox.counts(store.conn).get("done", 0)
        store.conn.close()
        child = subprocess.run([sys.executable, __file__, "--post", str(vdir / "batches.pkl"), "--in-flight",
                                str(a.in_flight)], check=False, capture_output=True, text=True, timeout=600)
        if child.returncode != 0:
            raise SystemExit(f"ceiling failed:\n{child.stdout}{child.stderr}")
        ceil = orjson.loads(child.stdout.strip().splitlines()[-1])
        ceiling_stats = self.stats(reset=True)
        return Result(vendor, n, hub_stats["last"] - t0, hub_stats["last"] - hub_stats["first"], rss, cpu, hub_stats,
                      done, ceil["end"] - ceil["start"], ceil["rss_mib"], ceil["cpu"], ceiling_stats)

    def stop_hub(self) -> None:
        if self.hub is not None and self.hub.poll() is None:
            self.hub.terminate()
            try:
                self.hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.hub.kill()
                self.hub.wait(timeout=10)

    def close(self) -> None:
        self.stop_hub()
        if self.sink.poll() is None:
            self.sink.terminate()
            self.sink.wait(timeout=10)


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nSIEM forwarding, {os.cpu_count()} CPUs, render process {args.render_process}, batch max_events "
          f"{args.batch}, in_flight {args.in_flight}, "
          "gzip on, the type's default max_bytes (HEC 1 MB, bulk 5 MB); KiB/req: gzip'd, as received")
    print(f"{'vendor':<7}{'N':>9}{'hub total':>11}{'hub drain':>11}{'ceiling':>10}{'ratio':>7}{'hub RSS':>9}"
          f"{'ceil RSS':>9}{'hub CPU':>9}{'lost':>6}{'dups':>6}{'reqs':>6}{'KiB/req':>9}")
    print(f"{'':<7}{'':>9}{'events/s':>11}{'events/s':>11}{'events/s':>10}{'':>7}{'MiB':>9}{'MiB':>9}{'s':>9}")
    for r in results:
        for who, s in (("hub", r.hub_stats), ("ceil", r.ceiling_stats)):
            if s["events"] != r.n or s["distinct"] != r.n:
                print(f"  !! {r.vendor} {who}: fake counted {s['events']} events, {s['distinct']} distinct of {r.n}")
        lost = r.n - r.hub_stats["distinct"]
        print(f"{r.vendor:<7}{r.n:>9,}{r.n / r.hub_total:>11,.0f}{r.n / r.hub_drain:>11,.0f}{r.n / r.ceiling:>10,.0f}"
              f"{r.ceiling / r.hub_drain:>7.2f}{r.hub_rss:>9.0f}{r.ceiling_rss:>9.0f}{r.hub_cpu:>9.1f}{lost:>6}"
              f"{r.hub_stats['duplicates']:>6}{r.hub_stats['requests']:>6}"
              f"{r.hub_stats['bytes'] / r.hub_stats['requests'] / 1024:>9.1f}")
        creqs = max(1, r.ceiling_stats["requests"])
        print(f"{'':<7}hub {r.n / r.hub_stats['requests']:,.0f} events/request; ceiling {creqs} requests, "
              f"{r.n / creqs:,.0f} events/request, {r.ceiling_stats['bytes'] / creqs / 1024:.1f} KiB/request, "
              f"{r.ceiling_stats['duplicates']} dups, {r.ceiling_cpu:.1f} s CPU; hub start-up (process start -> "
              f"first request) {r.hub_total - r.hub_drain:.2f} s; outbox rows done {r.done:,} of {r.n:,}")
    print("ratio = hub drain / ceiling events/s (target >= 0.5); hub total includes start-up")
    for r in results:
        if r.vendor == "hec":
            rate = r.n / r.hub_total
            print(f"HEC >= 20,000 events/s: {'met' if rate >= 20_000 else 'not met'} ({rate:,.0f} events/s incl. "
                  f"start-up, {r.n / r.hub_drain:,.0f} drain); ratio >= 0.5: "
                  f"{'met' if r.ceiling / r.hub_drain >= 0.5 else 'not met'}")
        else:
            print(f"bulk ratio >= 0.5: {'met' if r.ceiling / r.hub_drain >= 0.5 else 'not met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hec-events", type=int, default=100_000)
    ap.add_argument("--bulk-events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000, help="batch.max_events")
    ap.add_argument("--in-flight", type=int, default=4, help="batch.in_flight (and the ceiling's concurrency)")
    ap.add_argument("--only", choices=("hec", "bulk"))
    ap.add_argument("--render-process", choices=("auto", "on", "off"), default="auto",
                    help="pipeline.render_process of the hub (auto: on with 2+ CPUs)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (configs, databases, hub logs)")
    ap.add_argument("--post", help=argparse.SUPPRESS)  # ceiling child: the pre-built batches file
    args = ap.parse_args()
    if args.post:
        post_batches(args.post, args.in_flight)
        return
    work = Path(tempfile.mkdtemp(prefix="hub-siem-bench-"))
    bench = Bench(work, args)
    results = []
    try:
        for vendor, n in (("hec", args.hec_events), ("bulk", args.bulk_events)):
            if args.only in (None, vendor):
                results.append(bench.run(vendor, n))
    finally:
        bench.close()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args)


if __name__ == "__main__":
    main()
