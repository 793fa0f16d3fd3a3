"""The edge of `hub serve` against slow and oversized clients: real loopback sockets against a subprocess.

Each test starts `hub serve` with short deadlines (1 s) so the behaviour shows quickly; every socket and the
process are closed whatever happens.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from hub import signatures
from hub.store import events as event_rows
from tests.support import HMAC_SECRET, HubProcess, base_config, store_at, write_config

SIGNER = signatures.build("hmac-sha256", [HMAC_SECRET], header="X-SE-Signature")

pytestmark = pytest.mark.slow  # each test drives real sockets or many generated requests


def _hub(tmp_path: Path, **server: object) -> HubProcess:
    data = base_config(tmp_path)
    data["server"].update({"header_timeout_secs": 1, "body_timeout_secs": 1, "keepalive_timeout_secs": 1, **server})
    return HubProcess(write_config(tmp_path / "hub.yaml", data))


def _signed_post(port: int, n: int) -> httpx.Response:
    body = orjson.dumps({"id": f"edge-{n}", "n": n})
    headers = {"content-type": "application/json", **SIGNER.sign(body, time.time())}
    return httpx.post(f"http://127.0.0.1:{port}/hooks/se", content=body, headers=headers, timeout=5)


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def _open(opened: list[socket.socket], port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(s)
    if data:
        s.sendall(data)
    return s


def _until_closed(s: socket.socket, within: float) -> bytes:
    """Everything the server sent before closing; fails if it still holds the connection after ``within`` s."""
    s.settimeout(within)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server still holds the connection after {within} s (got {got[:80]!r})")
    return got


def _status(answer: bytes) -> int | None:
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else None


def _events(tmp_path: Path) -> int:
    with store_at(tmp_path / "hub.db") as conn:
        return sum(event_rows.counts(conn).values())


def test_half_sent_headers_bodies_and_silent_clients_are_dropped_after_the_deadlines(tmp_path):
    with _hub(tmp_path) as hub, _sockets() as opened:
        started = time.monotonic()
        silent = _open(opened, hub.port, b"")
        heads = [_open(opened, hub.port, b"POST /hooks/se HTTP/1.1\r\nHost: x\r\nX-Slow: ") for _ in range(3)]
        bodies = [_open(opened, hub.port, b"POST /hooks/se HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                          b"X-SE-Signature: 00\r\nContent-Length: 100\r\n\r\n{\"a\": ")
                  for _ in range(3)]
        idle = _open(opened, hub.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # then keep-alive, idle
        first = idle.recv(65536)
        while not first.endswith(b"}"):
            first += idle.recv(65536)
        assert _status(first) == 200
        assert _until_closed(silent, 4) == b""
        for s in heads:
            assert _status(_until_closed(s, 4)) == 408
        for s in bodies:
            answer = _until_closed(s, 4)
            assert _status(answer) == 408 and b'"code":"body_timeout"' in answer
        assert _until_closed(idle, 4) == b""
        assert time.monotonic() - started < 4
        assert _signed_post(hub.port, 1).status_code == 202  # the hub itself is fine
        metrics = httpx.get(hub.url + "/metrics", timeout=5).text
        assert 'hub_connections_dropped_total{reason="header_timeout"} 3.0' in metrics
        assert 'hub_connections_dropped_total{reason="body_timeout"} 3.0' in metrics
        assert 'hub_connections_dropped_total{reason="idle"} 1.0' in metrics


def test_a_request_answered_before_its_slow_body_gets_no_second_answer(tmp_path):
    with _hub(tmp_path) as hub, _sockets() as opened:
        s = _open(opened, hub.port, b"POST /hooks/nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        answer = _until_closed(s, 4)  # 404 at once, then closed at the body deadline without a 408 after it
        assert _status(answer) == 404 and b"408" not in answer and answer.count(b"HTTP/1.1") == 1


def test_headers_over_the_limit_are_answered_431_and_never_stored(tmp_path):
    with _hub(tmp_path, max_header_bytes=4096) as hub, _sockets() as opened:
        body = b'{"id": "big"}'
        sig = SIGNER.sign(body, time.time())["X-SE-Signature"].encode()
        for size in (5000, 8 * 1024 * 1024):  # one request's fields, and one field httptools would buffer whole
            s = _open(opened, hub.port, b"")
            head = (b"POST /hooks/se HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-SE-Signature: " + sig +
                    b"\r\nContent-Length: %d\r\nX-Big: " % len(body))
            with contextlib.suppress(ConnectionError):  # the server may close while the rest is still being sent
                s.sendall(head + b"a" * size + b"\r\n\r\n" + body)
            answer = _until_closed(s, 4)
            assert _status(answer) == 431 and b'"code":"headers_too_large"' in answer
        assert _signed_post(hub.port, 2).status_code == 202
    assert _events(tmp_path) == 1


def test_past_the_connection_cap_the_slowest_waiting_connection_makes_room_for_a_signed_post(tmp_path):
    with _hub(tmp_path, max_connections=8, header_timeout_secs=30) as hub, _sockets() as opened:
        slow = [_open(opened, hub.port, b"POST /hooks/se HTTP/1.1\r\nHost: x\r\n") for _ in range(8)]
        time.sleep(0.2)  # let the server accept all of them
        assert _signed_post(hub.port, 3).status_code == 202  # meanwhile, not after the slow ones' deadline
        answer = _until_closed(slow[0], 2)  # the one that waited longest made room
        assert _status(answer) == 503 and b'"code":"evicted"' in answer
        for s in slow[1:]:
            s.settimeout(0.05)
            with pytest.raises(TimeoutError):
                s.recv(1)  # the others are still held: only one was needed
        metrics = httpx.get(hub.url + "/metrics", timeout=5).text  # (this connection may evict another one)
        evicted = re.search(r'hub_connections_dropped_total\{reason="evicted"\} (\d+)', metrics)
        assert evicted is not None and int(evicted.group(1)) >= 1


def test_when_every_connection_is_busy_a_new_one_gets_503_until_they_are_gone(tmp_path):
    with _hub(tmp_path, max_connections=4, body_timeout_secs=1.5) as hub, _sockets() as opened:
        busy = [_open(opened, hub.port, b"POST /hooks/se HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
                for _ in range(4)]  # headers complete, body arriving: not evicted
        time.sleep(0.2)
        answer = _until_closed(_open(opened, hub.port, b""), 2)
        assert _status(answer) == 503 and b'"code":"over_capacity"' in answer
        for s in busy:
            assert _status(_until_closed(s, 4)) == 408
        assert _signed_post(hub.port, 4).status_code == 202


def test_the_connection_cap_fits_the_open_file_limit(monkeypatch):
    """Past the open-file limit accept() fails and nobody answers: the cap keeps 128 descriptors for the hub."""
    import resource

    from hub.edge import connection_cap

    limits = {"soft": 1024, "hard": 1024}

    def getrlimit(which: int) -> tuple[int, int]:
        return limits["soft"], limits["hard"]

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        if value[0] > limits["hard"]:
            raise ValueError("not allowed")
        limits["soft"] = value[0]

    monkeypatch.setattr(resource, "getrlimit", getrlimit)
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert connection_cap(1000) == 896  # the hard limit is 1,024: lowered
    limits.update(soft=1024, hard=4096)
    assert connection_cap(1000) == 1000 and limits["soft"] == 1128  # the soft limit is raised instead
