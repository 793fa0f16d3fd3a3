"""``POST /hooks/{source}``: raw body -> verify -> store (group commit) -> 202. Nothing else.

A thin ASGI callable rather than a Starlette route: it is the hot path, and skipping Request and
JSONResponse objects is worth about half the throughput (../docs/architecture.md, "Intake").
Order of checks: unknown source 404, wrong method 405, headers 431, size 413 (never buffering past the limit),
signature or timestamp 401, media type 415, JSON 400, then the store (503 if it cannot commit). A replay within
its window is answered as a duplicate (``Source.replay_mark``, hub/store/replays.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hub import jsonlimits, signatures
from hub.config import ServerConfig, SourceConfig
from hub.errors import VerificationError, error_json, is_transient
from hub.ids import iso, parse_uint
from hub.metrics import Metrics
from hub.redact import clip, loggable_headers, redact_headers
from hub.store import Store, replays
from hub.store.events import NewEvent

log = logging.getLogger("hub.receiver")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX = "/hooks/"


class ClientGone(Exception):
    """The client closed the connection (or the edge dropped it) before its body was read: nobody to answer."""


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 JSON pointer; None when the path does not exist."""
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
        if doc is None:
            return None
    return doc


@dataclass(frozen=True)
class Source:
    """A configured source, prepared once: scheme with decoded keys, pointer, metric children."""

    name: str
    scheme: signatures.Scheme
    pointer: str | None
    accepts_form: bool
    redact: frozenset[str]
    replay_window: int  # seconds a digest is remembered; 0 = no guard (the scheme signs the event id)
    signed_id: bool  # the scheme's id header is signed, so a replay carries the same idempotency key

    def replay_mark(self, timestamp: int | None, body: bytes, now: float) -> tuple[bytes, float] | None:
        """(digest, expiry) for the replay guard: a signed timestamp is remembered until it goes stale
        (timestamp + tolerance), anything else for ``replay_window`` from now."""
        if not self.replay_window:
            return None
        if timestamp is not None:
            return replays.digest(self.name, b"%d." % timestamp + body), float(timestamp + self.replay_window)
        return replays.digest(self.name, body), now + self.replay_window

    @classmethod
    def build(cls, name: str, cfg: SourceConfig) -> Source:
        assert cfg.verify is not None
        scheme = cfg.verify.build()
        timestamped = cfg.verify.scheme in signatures.TIMESTAMPED
        return cls(name, scheme, cfg.id_pointer(), cfg.verify.scheme in signatures.FORM_SCHEMES,
                   frozenset(getattr(scheme, "signature_headers", ())),
                   cfg.verify.tolerance_secs if timestamped else cfg.verify.replay_window_secs,
                   cfg.verify.scheme in signatures.SIGNED_ID)


class Receiver:
    """``on_stored`` is called after each new event is committed (the pipeline wakes to process it)."""

    def __init__(self, sources: Mapping[str, SourceConfig], server: ServerConfig, store: Store, metrics: Metrics, *,
                 clock: Callable[[], float], on_stored: Callable[[], None]):
        self.store, self.metrics, self.clock, self.on_stored = store, metrics, clock, on_stored
        self.sources = {name: Source.build(name, cfg) for name, cfg in sources.items() if cfg.verify}
        self.limit = server.max_body_bytes
        self.header_limit = server.max_header_bytes
        m = metrics
        self._received = {n: m.received.labels(n) for n in [*self.sources, "_unknown"]}
        self._stored = {n: m.stored.labels(n) for n in self.sources}
        self.poll_only = {n for n, cfg in sources.items() if cfg.verify is None}
        self._duplicate = {n: m.duplicate.labels(n) for n in self.sources}
        self._latency = m.latency.labels("hooks")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        name = scope["path"][len(PREFIX):]
        try:
            await self._handle(name, scope, receive, send)
        finally:
            self._latency.observe(time.perf_counter() - started)

    async def _handle(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        src = self.sources.get(name)
        self._received[name if src else "_unknown"].inc()
        if src is None:
            message = f"source {name!r} has no verify: block, it is only polled" if name in self.poll_only \
                else f"no source named {clip(name, 64)!r} is configured"
            return await self._reject(send, scope, name, 404, "unknown_source", message)
        if scope["method"] != "POST":
            return await self._reject(send, scope, name, 405, "method_not_allowed", "use POST",
                                      [(b"allow", b"POST")])
        if sum(len(k) + len(v) for k, v in scope["headers"]) > self.header_limit:  # `hub serve`'s edge says 431
            return await self._reject(send, scope, name, 431, "headers_too_large",  # first; other servers: here
                                      f"headers exceed {self.header_limit} bytes", [(b"connection", b"close")])
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(receive, headers)
        except ClientGone:
            return
        if body is None:
            return await self._reject(send, scope, name, 413, "payload_too_large",
                                      f"body is larger than {self.limit} bytes", [(b"connection", b"close")])
        now = self.clock()
        try:
            verified = src.scheme.verify(headers, body, now)
        except VerificationError as exc:
            return await self._reject(send, scope, name, 401, exc.code, str(exc), headers=headers, src=src)
        ctype = headers.get("content-type", "").partition(";")[0].strip().lower()
        is_form = ctype == "application/x-www-form-urlencoded"
        signed_key = src.signed_id
        if is_form and src.accepts_form:
            key = verified.idempotency_key
        elif ctype in ("application/json", "") or ctype.endswith("+json"):
            try:
                doc = jsonlimits.loads(body)
            except orjson.JSONDecodeError as exc:
                return await self._reject(send, scope, name, 400, "invalid_json", f"body is not valid JSON: {exc}")
            except jsonlimits.TooDeepError as exc:  # the pipeline could not encode it: refuse it while the sender sees
                return await self._reject(send, scope, name, 400, "too_deep", f"body is not accepted: {exc}")
            key = verified.idempotency_key
            if src.pointer is not None and (found := resolve_pointer(doc, src.pointer)) is not None:
                key = found if isinstance(found, str) else orjson.dumps(found).decode()
                signed_key = True  # it is in the signed body
        else:
            allowed = "application/json" + (" or application/x-www-form-urlencoded" if src.accepts_form else "")
            return await self._reject(send, scope, name, 415, "unsupported_media_type",
                                      f"content-type {ctype!r} is not accepted; send {allowed}")
        event = NewEvent(name, iso(now), key, ctype or None,
                         orjson.dumps(redact_headers(headers, src.redact)).decode(), body, src.scheme.name)
        replay = None if key is not None and signed_key else src.replay_mark(verified.timestamp, body, now)
        try:
            event_id, duplicate = await self.store.insert_event(event, replay, now)
        except Exception as exc:  # nothing was committed: the sender must retry
            if not is_transient(exc):  # a passing store fault is logged by the store; anything else is a bug
                log.exception("store refused an event from source %s", name, extra={"source": name})
            return await self._reject(send, scope, name, 503, "unavailable", f"the event was not stored: {exc}",
                                      [(b"retry-after", b"5")])
        if duplicate:
            self._duplicate[name].inc()
            return await _respond(send, 200, b'{"id":"%s","status":"duplicate"}' % event_id.encode())
        self._stored[name].inc()
        log.debug("source %s: stored %s", name, event_id, extra={"event_id": event_id, "source": name})
        self.on_stored()
        await _respond(send, 202, b'{"id":"%s","status":"accepted"}' % event_id.encode())

    async def _read_body(self, receive: Receive, headers: Mapping[str, str]) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        declared = headers.get("content-length")
        if declared is not None and (size := parse_uint(declared)) is not None and size > self.limit:
            return None
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= self.limit else None
        chunks, size = [body], len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _reject(self, send: Send, scope: Scope, name: str, status: int, code: str, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None, *, headers: Mapping[str, str] | None = None,
                      src: Source | None = None) -> None:
        label = name if name in self.sources else "_unknown"
        self.metrics.rejected.labels(label, code).inc()
        client = scope.get("client") or ("-", 0)
        if headers is not None:  # a failed verification: show what was sent, never the secret parts, bounded
            log.warning("rejected source=%s status=%d code=%s client=%s reason=%s headers=%s", label, status, code,
                        client[0], clip(message), loggable_headers(headers, src.redact if src else frozenset()),
                        extra={"source": label})
        else:
            log.warning("rejected source=%s status=%d code=%s client=%s reason=%s", label, status, code,
                        client[0], clip(message), extra={"source": label})
        await _respond(send, status, error_json(status, code, message), extra or [])


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
