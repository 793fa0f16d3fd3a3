"""A fast local receiver for the pipeline benchmark (raw ASGI, run by uvicorn in its own process).

POST /hook       count the delivery; if the finding's raw body carries ``sent_at`` (epoch seconds),
                 record now - sent_at as the end-to-end latency
GET  /stats      {"count": n, "latencies": [...]} and reset with ?reset=1
"""

from __future__ import annotations

import time

import orjson

state: dict = {"count": 0, "latencies": [], "ids": set(), "duplicates": 0}


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    out = b"{}"
    if scope["path"] == "/hook":
        now = time.time()
        state["count"] += 1
        key = dict(scope["headers"]).get(b"webhook-id")
        if key in state["ids"]:
            state["duplicates"] += 1
        state["ids"].add(key)
        try:
            sent = orjson.loads(body)["finding"]["raw"].get("sent_at")
            if sent:
                state["latencies"].append(now - float(sent))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    elif scope["path"] == "/stats":
        out = orjson.dumps({"count": state["count"], "latencies": state["latencies"],
                            "duplicates": state["duplicates"]})
        if b"reset=1" in scope.get("query_string", b""):
            state.update(count=0, latencies=[], ids=set(), duplicates=0)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
