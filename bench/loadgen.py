"""A small HTTP/1.1 keep-alive load generator (asyncio + uvloop), used when wrk is not installed.

Each of ``connections`` clients sends one request at a time on its own socket and waits for the
answer, like wrk. Requests are pre-built bytes; the answer is read by Content-Length. Given several ports (hubs
sharing one store), client k talks to ``ports[k % len(ports)]``: the connections are split evenly, and the
latencies of every request on every port land in one list (exact percentiles over the whole load).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Result:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0


async def _client(host: str, port: int, requests: list[bytes], offset: int, deadline: float, out: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < deadline:
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            out.latencies.append(time.perf_counter() - t0)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.requests += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        out.errors += 1
    finally:
        writer.close()


async def _run(host: str, ports: Sequence[int], requests: list[bytes], connections: int, seconds: float) -> Result:
    out = Result()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_client(host, ports[k % len(ports)], requests, k * 7919, deadline, out)
                           for k in range(connections)))
    out.seconds = time.perf_counter() - start
    return out


def run(host: str, port: int | Sequence[int], requests: list[bytes], connections: int, seconds: float) -> Result:
    ports = [port] if isinstance(port, int) else list(port)
    try:
        import uvloop

        return uvloop.run(_run(host, ports, requests, connections, seconds))
    except ImportError:
        return asyncio.run(_run(host, ports, requests, connections, seconds))
