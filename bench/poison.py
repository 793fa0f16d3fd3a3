"""Poison events: N stored events the encoder refuses (300 levels deep) ahead of one good event, then `hub serve`
for S seconds. Prints the hub's CPU seconds, its log size, and where the events ended.

    python bench/poison.py [--events 100] [--seconds 10]

A hub that spins on them (the bug this guards against) burns a core and writes a megabyte of log in 10 s while
the good event waits; a healthy one fails each poison event once, with its reason, and processes the good one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hub.store import SqliteStore  # noqa: E402
from hub.store import events as event_rows  # noqa: E402

CONFIG = """
storage: {{path: {db}}}
sources:
  scanner:
    verify: {{scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}
    adapter: generic
    options: {{findings: body.findings, fields: {{title: item.title, severity: item.severity, tool_id: item.id}}}}
routes: [{{name: all, on: [finding.created], to: [archive]}}]
targets: {{archive: {{type: file, path: out.ndjson}}}}
"""


def nested(levels: int) -> object:
    doc: object = "bottom"
    for _ in range(levels):
        doc = {"x": doc}
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hub-poison-bench-"))
    (work / "hub.yaml").write_text(CONFIG.format(db=work / "hub.db"))
    store = SqliteStore(work / "hub.db")
    for i in range(args.events + 1):
        item = {"id": f"F{i}", "title": "t", "severity": "high", **({"d": nested(300)} if i < args.events else {})}
        ev = event_rows.NewEvent("scanner", "2026-12-01T00:00:00.000000Z", f"k{i}", "application/json", "{}",
                                 json.dumps({"findings": [item]}).encode(), "standard-webhooks")  # orjson refuses it
        store.write_sync(lambda conn, ev=ev: event_rows.insert(conn, ev))
    store.conn.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (work / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(work / "hub.yaml"), "--port",
                                 str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(args.seconds)
            stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        finally:
            proc.kill()
            proc.wait()
    store = SqliteStore(work / "hub.db")
    states = event_rows.counts(store.conn)
    attempts = max(e["attempts"] for e in event_rows.listing(store.conn, limit=args.events + 1))
    store.conn.close()
    print(f"{args.events} poison events + 1 good one, hub serve for {args.seconds:g} s: CPU {cpu:.1f} s "
          f"({cpu / args.seconds:.0%} of one core, start-up included); log {(work / 'serve.log').stat().st_size:,} "
          f"bytes; events {states}; most attempts on one event: {attempts}")


if __name__ == "__main__":
    main()
