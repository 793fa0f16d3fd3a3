"""The benchmarks' multi-process parts (bench/stores.py, bench/loadgen.py, bench/ingest.py): how the bench knows
each hub of a shared port listens, how the load is spread over several ports, which configurations are allowed.
The benches themselves run in bench/smoke.sh; these pin what a real comparison is read with."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import ingest
import loadgen
import stores


def parse(*argv: str) -> list[tuple[str, int]]:
    ap = argparse.ArgumentParser()
    stores.add_arguments(ap)
    return stores.configurations(ap, ap.parse_args(argv))


def test_configurations():
    assert parse() == [("sqlite", 1)]
    assert parse("--store", "postgres", "--processes", "3") == [("postgres", 3)]
    assert parse("--compare") == [("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3)]
    with pytest.raises(SystemExit):  # one hub serve per SQLite file
        parse("--processes", "2")
    with pytest.raises(SystemExit):
        parse("--store", "postgres", "--processes", "0")


def test_storage_yaml():
    assert stores.storage_yaml("/tmp/x/bench.db") == "{path: /tmp/x/bench.db}"
    assert stores.storage_yaml("postgresql://h/test?options=x") == '{url: "postgresql://h/test?options=x"}'


def test_listening_tells_which_process_holds_a_shared_port():
    """N hubs on one port (server.reuse_port): the bench waits until each one listens, which a connection (answered
    by any of them) cannot tell."""
    import os

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not ingest.listening(os.getpid(), port)  # bound, not yet listening
        sock.listen()
        assert ingest.listening(os.getpid(), port)
        assert not ingest.listening(os.getppid(), port)


@pytest.fixture
def two_servers() -> Iterator[tuple[list[int], list[int]]]:
    """Two keep-alive HTTP servers answering 202; the second list counts the requests each got."""
    counts = [0, 0]
    listeners = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        listeners.append(sock)

    def serve(k: int, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                _, buf = buf.split(b"\r\n\r\n", 1)
                counts[k] += 1
                conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    def accept(k: int, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(k, conn), daemon=True).start()

    for k, sock in enumerate(listeners):
        threading.Thread(target=accept, args=(k, sock), daemon=True).start()
    yield [s.getsockname()[1] for s in listeners], counts
    for sock in listeners:
        sock.close()


@pytest.mark.slow  # a 0.3 s load
def test_loadgen_splits_the_connections_over_the_ports(two_servers):
    ports, counts = two_servers
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    res = loadgen.run("127.0.0.1", ports, [request], 4, 0.3)
    assert res.errors == 0 and res.statuses == {202: res.requests}
    assert counts[0] > 0 and counts[1] > 0  # both hubs loaded
    assert len(res.latencies) == res.requests == sum(counts)  # one list of latencies over both
