"""The HTTP edge: uvicorn's httptools protocol with the limits a listener open to the internet needs.

uvicorn closes idle keep-alive connections, but nothing else: a client that sends its headers or its
body one byte at a time (slowloris), or never sends anything, holds a connection and a file
descriptor forever, and httptools buffers a header of any size. Measured before this module: 1,005 of
1,100 half-sent requests were still held after 32 s, and at the open-file limit a valid signed POST
failed. uvicorn's ``limit_concurrency`` only answers 503 once a request's headers are complete, which a
slow client never reaches.

``EdgeProtocol`` adds, per connection:
- a header deadline from the first byte of a request (or from the accept) to the end of its headers;
- a body deadline from the end of the headers to the end of the body;
- a cap on header bytes (request line and fields), answered 431;
- a cap on open connections, checked at accept. Over the cap, the connection that has waited longest
  without a complete request (slow headers, or idle between requests) is closed to make room, answered
  503 if it had started a request; only when every connection is busy (a body arriving, the app working)
  is the new one answered 503 and closed. So a flood of slow clients cannot lock a sender out: a real
  request completes its headers in one read and is never the oldest waiting.

A request that arrives whole in one read (nearly every webhook) arms no timer: the deadlines are only
armed when a read ends with the headers or the body still incomplete, so the hot path pays nothing.
Refusals write a complete answer in the one JSON error shape, then close the connection.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.errors import error_json

_HEADERS, _BODY, _ANSWER = 0, 1, 2  # reading the headers / reading the body / the app has the whole request


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int
    on_drop: Callable[[str], None] | None = None  # told why a connection was refused or dropped (a metric)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; ``data_received`` answers it."""


class EdgeProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header/body deadlines, a header size cap and a connection cap (see module doc)."""

    limits: ClassVar[EdgeLimits]
    waiting: ClassVar[dict[EdgeProtocol, None]]  # connections without a complete request, oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _HEADERS
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # raw bytes read while the current request's headers were incomplete
        self._field_bytes = 0  # request line and parsed header fields of the current request
        self._refusal: tuple[int, str, str] | None = None

    # connection ----------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            victim = next(iter(self.waiting), None)
            if victim is None:
                self._refuse(503, "over_capacity", f"{self.limits.max_connections} connections are busy; retry")
                return
            victim._evict()
        self.waiting[self] = None
        self._arm(self.limits.header_timeout)  # a client that connects and sends nothing

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the header byte count, the refusals raised by callbacks and the deadlines."""
        self._unset_keepalive_if_required()
        if self._phase == _HEADERS:
            self._header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._phase == _HEADERS and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(*self._too_large())  # one huge field that httptools is still buffering
        elif self._phase != _ANSWER and self._deadline is None and not self.transport.is_closing():
            self._arm(self.limits.header_timeout if self._phase == _HEADERS else self.limits.body_timeout)

    # parser callbacks ---------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase, self._header_bytes, self._field_bytes = _HEADERS, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self.waiting.pop(self, None)
        self._phase = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._phase = _ANSWER
        super().on_message_complete()

    # helpers ------------------------------------------------------------------------------------------------

    def _count(self, n: int) -> None:
        self._field_bytes += n
        if self._field_bytes > self.limits.max_header_bytes:
            self._refusal = self._too_large()
            raise _Refused

    def _too_large(self) -> tuple[int, str, str]:
        return 431, "headers_too_large", f"request line and headers exceed {self.limits.max_header_bytes} bytes"

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == _BODY and self.cycle.response_complete:
            self._drop("body_timeout")  # answered without reading it (404, 431): a second answer would be garbage
        elif self._phase == _BODY:
            self._refuse(408, "body_timeout", f"the body was not received within {self.limits.body_timeout:g} s")
        elif self._phase == _HEADERS and self._header_bytes == 0 and self._field_bytes == 0:
            self._drop("idle")  # nothing was asked: nothing to answer
        elif self._phase == _HEADERS:
            self._refuse(408, "header_timeout",
                         f"the headers were not received within {self.limits.header_timeout:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer with the one JSON error shape and close; never reads or echoes what the client sent."""
        body = error_json(status, code, message)
        head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
        self.transport.write(head + body)
        self._drop(code)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:  # idle until the next request
            self.waiting.pop(self, None)
            self.waiting[self] = None

    def _evict(self) -> None:
        """Make room for a new connection: closed, answered 503 if a request had begun."""
        if self._phase == _HEADERS and (self._header_bytes or self._field_bytes):
            self._refuse(503, "evicted", "the server is at its connection limit and this request was the slowest")
        else:
            self._drop("evicted")

    def _drop(self, reason: str) -> None:
        self._disarm()
        self.waiting.pop(self, None)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        self.transport.close()
        if self.limits.on_drop is not None:
            self.limits.on_drop(reason)


RESERVED_FDS = 128  # the store and its WAL, outbound clients, the render process, logs


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered if the process's open-file limit cannot hold that many connections besides
    ``RESERVED_FDS`` (the soft limit is raised towards the hard one first). Past the limit, accept() fails and
    the kernel queues connections nobody answers; under the cap each one is answered 503 and closed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_FDS))


def protocol_class(limits: EdgeLimits) -> type[EdgeProtocol]:
    """An ``EdgeProtocol`` bound to these limits, to pass as uvicorn's ``http=`` (it builds one per connection)."""
    return type("BoundEdgeProtocol", (EdgeProtocol,), {"limits": limits, "waiting": {}})
