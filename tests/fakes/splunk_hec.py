"""A Splunk HTTP Event Collector that checks what a real one checks, and keeps what it indexed.

``/services/collector/event``: ``Authorization: Splunk <token>`` (401 code 2 without it, 401 code 3 when
malformed, 403 code 4 for a wrong token), gzip really decoded when ``Content-Encoding: gzip`` says so,
a size limit (413), concatenated JSON envelopes checked one by one (time a number, event required and
not blank, fields flat with string or string-list values, index allowed for the token); the first bad
event ends the request with ``invalid-event-number`` and the events before it stay indexed (what HEC
implementers report). ``/services/collector/ack``: indexer acknowledgement on a channel; each ``true`` is
reported once. Switches on ``app.state`` make it busy (503 code 9) or lose a request before indexing.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "5f8c3a1e-0d7b-4c2e-9a61-2b4f7e9d1c30"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_decoder = json.JSONDecoder()


def answer(status: int, code: int | None, text: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"text": text, **({"code": code} if code is not None else {}), **extra}
    return JSONResponse(body, status_code=status)


def envelopes(text: str) -> tuple[list[Any], int | None]:
    """Concatenated JSON values separated by whitespace: (parsed, index of the first one that does not parse)."""
    out: list[Any] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return out, None
        try:
            value, pos = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return out, len(out)
        out.append(value)


def problem(env: Any, indexes: set[str]) -> tuple[int, str] | None:
    """HEC's per-event checks: (code, text) of the first problem, or None."""
    if not isinstance(env, dict):
        return 6, "Invalid data format"
    if "event" not in env:
        return 12, "Event field is required"
    event = env["event"]
    if event is None or (isinstance(event, str) and not event.strip()):
        return 13, "Event field cannot be blank"
    t = env.get("time")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float, str))
                          or (isinstance(t, str) and not re.fullmatch(r"\d+(\.\d+)?", t))):
        return 6, "Invalid data format"
    if any(k in env and not isinstance(env[k], str) for k in ("host", "source", "sourcetype", "index")):
        return 6, "Invalid data format"
    fields = env.get("fields", {})
    flat = isinstance(fields, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)) for v in fields.values())
    if not flat:
        return 15, "Error in handling indexed fields"
    if env.get("index") is not None and env["index"] not in indexes:
        return 7, "Incorrect index"
    return None


def fake_hec(token: str = TOKEN, *, indexes: tuple[str, ...] = ("main", "security"),
             max_content_length: int = 1_000_000, ack: bool = False, ack_after_polls: int = 1) -> Starlette:
    """The fake; tests read and flip ``app.state`` (events, requests, busy, lose_next, ack_after_polls)."""
    allowed = set(indexes)
    next_ack: dict[str, int] = {}
    pending: dict[str, dict[int, int]] = {}  # channel -> ackId -> polls left before it reads true
    indexed: dict[str, set[int]] = {}  # channel -> ackIds whose true has not been reported yet

    def auth(request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization")
        if header is None:
            return answer(401, 2, "Token is required")
        scheme, _, value = header.partition(" ")
        if scheme != "Splunk" or not value:
            return answer(401, 3, "Invalid authorization")
        if value != token:
            return answer(403, 4, "Invalid token")
        return None

    def channel(request: Request) -> str | JSONResponse | None:
        value = request.headers.get("x-splunk-request-channel") or request.query_params.get("channel")
        if not ack:
            return value
        if not value:
            return answer(400, 10, "Data channel is missing")
        return value if GUID.match(value) else answer(400, 11, "Invalid data channel")

    async def event(request: Request) -> JSONResponse:
        app.state.requests.append(dict(request.headers))
        if (denied := auth(request)) is not None:
            return denied
        if app.state.busy:
            app.state.busy_answers += 1
            return answer(503, 9, "Server is busy")
        chan = channel(request)
        if isinstance(chan, JSONResponse):
            return chan
        raw = await request.body()
        if len(raw) > max_content_length:
            return answer(413, None, f"Content-Length of {len(raw)} too large (maximum is {max_content_length})")
        if request.headers.get("content-encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error):
                return answer(400, 6, "Invalid data format")
            if len(raw) > max_content_length:  # whether Splunk counts before or after gzip is unconfirmed: both
                return answer(413, None, f"decompressed body of {len(raw)} too large (maximum is {max_content_length})")
        if not raw.strip():
            return answer(400, 5, "No data")
        try:
            docs, bad = envelopes(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return answer(400, 6, "Invalid data format", **{"invalid-event-number": 0})
        app.state.sizes.append(len(raw))
        lost = app.state.lose_next > 0
        accepted: list[dict[str, Any]] = []
        for i, env in enumerate(docs):
            if (found := problem(env, allowed)) is not None:
                code, text = found
                _index(accepted, lost)  # the events before the bad one stay indexed (implementers' reports)
                # Public reports show code 7 counting from 1 and code 6 from 0 (unconfirmed); the fake does both.
                return answer(400, code, text, **{"invalid-event-number": i + 1 if code == 7 else i})
            accepted.append(env)
        if bad is not None:
            _index(accepted, lost)
            return answer(400, 6, "Invalid data format", **{"invalid-event-number": bad})
        if lost:
            app.state.lose_next -= 1
        _index(accepted, lost)
        if not ack:
            return answer(200, 0, "Success")
        assert isinstance(chan, str)
        ack_id = next_ack[chan] = next_ack.get(chan, -1) + 1  # ack ids count from 0 on each channel
        if not lost:  # a lost request is never indexed, so its ack never reads true
            pending.setdefault(chan, {})[ack_id] = app.state.ack_after_polls
        return answer(200, 0, "Success", ackId=ack_id)

    def _index(docs: list[dict[str, Any]], lost: bool) -> None:
        if not lost:
            app.state.events.extend({**d, "index": d.get("index") or "main"} for d in docs)

    async def ack_status(request: Request) -> JSONResponse:
        if (denied := auth(request)) is not None:
            return denied
        if not ack:
            return answer(400, 14, "ACK is disabled")
        chan = channel(request)
        if isinstance(chan, JSONResponse):
            return chan
        assert isinstance(chan, str)
        try:
            ids = json.loads(await request.body())["acks"]
        except (ValueError, KeyError, TypeError):
            return answer(400, 6, "Invalid data format")
        app.state.ack_polls += 1
        waiting, ready = pending.setdefault(chan, {}), indexed.setdefault(chan, set())
        for ack_id in list(waiting):
            waiting[ack_id] -= 1
            if waiting[ack_id] < 0:
                del waiting[ack_id]
                ready.add(ack_id)
        result = {}
        for ack_id in ids:
            result[str(ack_id)] = ack_id in ready
            ready.discard(ack_id)  # a true is reported once
        return JSONResponse({"acks": result})

    app = Starlette(routes=[Route("/services/collector/event", event, methods=["POST"]),
                            Route("/services/collector/ack", ack_status, methods=["POST"])])
    app.state.events = []
    app.state.requests = []
    app.state.sizes = []  # decompressed body size of each request that got that far
    app.state.busy = False
    app.state.busy_answers = 0
    app.state.lose_next = 0  # requests answered 200 (with an ackId) but never indexed
    app.state.ack_after_polls = ack_after_polls
    app.state.ack_polls = 0
    return app


def keys(app: Starlette) -> Counter[str]:
    """How many times each idempotency key was indexed."""
    return Counter(e["fields"]["idempotency_key"] for e in app.state.events)
