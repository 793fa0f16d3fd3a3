"""Sources benchmark: bulk ingestion through the hub's API, and a poll of a paged list API.

    python bench/sources.py [--findings 10000] [--batch 500] [--pages 50] [--per-page 100]

1. API: `hub serve` runs; --findings Strobes-shaped findings are POSTed to /api/v1/findings in
   batches of --batch; measured until every finding is processed (GET /api/v1/findings meta.total):
   findings/s, and the hub's peak RSS.
2. Poll: a fake SecureEndpoint list API (bench/fake_list_api.py under uvicorn) serves --pages pages
   of --per-page findings; `hub poll` pulls them once and the time until all are processed is
   measured with the hub's processing running: findings/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import free_port, peak_rss_mib, wait_http

HERE = Path(__file__).resolve().parent


def wait_total(url: str, token: str, want: int, timeout: float = 600) -> float:
    start = time.perf_counter()
    while True:
        total = httpx.get(url, headers={"authorization": f"Bearer {token}"}, params={"limit": 1},
                          timeout=30).json()["meta"]["total"]
        if total >= want:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"only {total} of {want} findings after {timeout} s")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--findings", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--per-page", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-sources-bench-"))
    hub_port, list_port = free_port(), free_port()
    config = work / "hub.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {hub_port}}}
storage: {{path: ./bench.db}}
sources:
  se_api:
    adapter: secureendpoint
    poll: {{url: "http://127.0.0.1:{list_port}/v1/findings", auth: {{bearer: bench}}, every_secs: 86400,
            page_size: {args.per_page}}}
pipeline: {{safety_net_secs: 1}}
api: {{rate_limit_per_min: 100000}}
""")
    env = {**os.environ, "FAKE_LIST_TOTAL": str(args.pages * args.per_page)}
    lister = subprocess.Popen([sys.executable, "-m", "uvicorn", "fake_list_api:app", "--port", str(list_port),
                               "--no-access-log", "--log-level", "warning"], cwd=HERE, env=env)
    hub = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(config), "--log-level", "warning"],
                           stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{hub_port}/healthz", hub)
        wait_http(f"http://127.0.0.1:{list_port}/v1/findings", lister)
        token = subprocess.run([sys.executable, "-m", "hub", "tokens", "create", "--config", str(config), "--name",
                                "bench", "--scope", "ingest", "--scope", "read"], capture_output=True, text=True,
                               check=True).stdout.strip()
        url = f"http://127.0.0.1:{hub_port}/api/v1/findings"
        start = time.perf_counter()
        with httpx.Client(timeout=60, headers={"authorization": f"Bearer {token}"}) as client:
            for b in range(0, args.findings, args.batch):
                items = [{"id": f"bulk-{i}", "title": f"Finding {i}", "severity": "high",
                          "asset_identifier": f"h{i % 50}", "description": "x" * 300, "file": f"/src/app/{i}.py",
                          "cve": [f"CVE-2026-{i:05d}"]}
                         for i in range(b, min(b + args.batch, args.findings))]
                r = client.post(url, json={"scanner_name": "bench", "project_id": "p", "findings": items})
                assert r.status_code == 202, r.text
        posted = time.perf_counter() - start
        api_total = wait_total(url, token, args.findings) + posted
        api_rss = peak_rss_mib(hub.pid)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "hub", "poll", "--config", str(config), "--source", "se_api"],
                             capture_output=True, text=True)
        pulled = time.perf_counter() - start
        assert out.returncode == 0, out.stderr
        poll_total = wait_total(url, token, args.findings + args.pages * args.per_page) + pulled
    finally:
        for proc in (hub, lister):
            proc.terminate()
            proc.wait(timeout=20)
    print(f"\nAPI bulk ingest: {args.findings:,} findings in batches of {args.batch}: posted in {posted:.1f} s, "
          f"all processed in {api_total:.1f} s = {args.findings / api_total:,.0f} findings/s; hub peak RSS "
          f"{api_rss:.0f} MiB")
    print(f"poll: {args.pages} pages x {args.per_page} findings pulled in {pulled:.1f} s ({out.stdout.strip()}), "
          f"all processed in {poll_total:.1f} s = {args.pages * args.per_page / poll_total:,.0f} findings/s")


if __name__ == "__main__":
    main()
