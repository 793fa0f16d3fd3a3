"""Slow-client bench: how many half-sent requests `hub serve` still holds after a while, and whether a valid
signed POST gets through meanwhile.

    python bench/slowclients.py [--connections 1100] [--hold-secs 32] [--trickle-secs 5] [--hub-nofile 1024]
    python bench/slowclients.py --connections 40 --hold-secs 3 --header-timeout 1 --body-timeout 1   # CI smoke

Starts `hub serve` (one hmac-sha256 source, a fresh SQLite file; the edge settings are the hub's defaults
unless given), opens N connections over loopback and leaves each request half-sent: half stop inside the
headers, half after the headers with most of the body missing. Every ``--trickle-secs`` each open connection
gets one more byte (slowloris: an idle timer alone would never fire). A valid signed POST is sent once all
are open and again at the end. After ``--hold-secs`` it counts the connections the server has not closed.
Exit status 1 if the server still holds any of them, or the final signed POST failed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECRET = "bench-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hub serve exited early with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"hub serve on port {port} did not start")


def signed_post(port: int, n: int) -> str:
    """One valid signed POST on a fresh connection; its status, or what went wrong."""
    body = json.dumps({"bench": "slowclients", "n": n, "at": time.time()}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    req = (f"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Signature: {sig}\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(req)
            answer = s.recv(64)
    except OSError as exc:
        return f"failed ({exc.__class__.__name__})"
    return answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else f"failed (answer {answer[:20]!r})"


def half_sent(i: int) -> bytes:
    if i % 2 == 0:  # inside the headers
        return b"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    return (b"POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Signature: 00\r\n"
            b"Content-Length: 1000\r\n\r\n{\"slow\": \"")


def still_held(socks: list[socket.socket]) -> int:
    """Connections the server has neither answered and closed, nor reset."""
    held = 0
    for s in socks:  # non-blocking: b"" is a close, BlockingIOError means still open (select() stops at fd 1024)
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            held += 1
        except OSError:
            pass
    return held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1100)
    ap.add_argument("--hold-secs", type=float, default=32.0)
    ap.add_argument("--trickle-secs", type=float, default=5.0, help="one more byte per connection this often (0: off)")
    ap.add_argument("--header-timeout", type=float, help="server.header_timeout_secs (default: the hub's)")
    ap.add_argument("--body-timeout", type=float, help="server.body_timeout_secs (default: the hub's)")
    ap.add_argument("--max-connections", type=int, help="server.max_connections (default: the hub's)")
    ap.add_argument("--hub-nofile", type=int, help="run the hub with this open-file limit (e.g. 1024, a common "
                                                    "default); without it the hub inherits this process's")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))

    work = Path(tempfile.mkdtemp(prefix="hub-slow-"))
    server = {"host": "127.0.0.1", "port": 8080}
    for key, value in (("header_timeout_secs", args.header_timeout), ("body_timeout_secs", args.body_timeout),
                       ("max_connections", args.max_connections)):
        if value is not None:
            server[key] = value
    config = work / "hub.yaml"
    config.write_text(json.dumps({"server": server, "storage": {"path": "./bench.db"},
                                  "sources": {"bench": {"verify": {"scheme": "hmac-sha256", "header": "X-Signature",
                                                                   "secrets": [SECRET]}}}}))
    port = free_port()
    def limit_files() -> None:
        if args.hub_nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.hub_nofile, args.hub_nofile))

    hub = subprocess.Popen([sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", str(port),
                            "--log-level", "warning"], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit_files)
    socks: list[socket.socket] = []
    try:
        wait_ready(port, hub)
        started = time.monotonic()
        refused = 0
        for i in range(args.connections):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(half_sent(i))
                s.setblocking(False)
                socks.append(s)
            except OSError:
                refused += 1
        opened = time.monotonic() - started
        during = signed_post(port, 1)
        print(f"opened {len(socks):,} half-sent requests in {opened:.1f} s ({refused:,} refused at connect); "
              f"a valid signed POST meanwhile: {during}", flush=True)
        next_trickle = time.monotonic() + args.trickle_secs
        while (left := args.hold_secs - (time.monotonic() - started)) > 0:
            if args.trickle_secs and time.monotonic() >= next_trickle:
                for s in socks:
                    with contextlib.suppress(OSError):
                        s.send(b"a")
                next_trickle += args.trickle_secs
            time.sleep(min(0.2, left))
        held = still_held(socks)
        after = signed_post(port, 2)
        print(f"after {args.hold_secs:g} s the server still holds {held:,} of {len(socks):,} "
              f"(trickle every {args.trickle_secs:g} s); a valid signed POST now: {after}")
    finally:
        for s in socks:
            s.close()
        if hub.poll() is None:
            hub.kill()
            hub.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    if held or after != "202":
        sys.exit(1)


if __name__ == "__main__":
    main()
