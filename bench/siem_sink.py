"""A fast local fake of Splunk HEC and the Elasticsearch Bulk API for bench/siem.py (raw ASGI, run by uvicorn
in its own process). It treats the hub and the plain-httpx ceiling exactly alike.

POST /services/collector/event  ``Authorization: Splunk $SIEM_SINK_HEC_TOKEN``, gzip'd or plain concatenated
                                envelopes (one per line); each must carry ``fields.idempotency_key``.
                                Answers ``{"text":"Success","code":0}`` like HEC (401 code 3, 400 code 6).
POST /_bulk                     ``Authorization: ApiKey $SIEM_SINK_API_KEY``, gzip'd or plain NDJSON action/document
                                pairs. Answers a real bulk response, one item per action with the ``_index`` and
                                ``_id`` of its action line, 201 created, or 409 ``version_conflict_engine_exception``
                                for a ``create`` of an ``_id`` already seen (as Elasticsearch does). ``filter_path``
                                is honoured the way Elasticsearch does for the patterns the hub sends.
GET  /stats                     {"events", "distinct", "duplicates", "requests", "bytes" (as received), "first",
                                "last" (time.time() of the first and last request counted)}; ``?reset=1`` clears.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

HEC_TOKEN = os.environ.get("SIEM_SINK_HEC_TOKEN", "bench-hec-token").encode()
API_KEY = os.environ.get("SIEM_SINK_API_KEY", "YmVuY2g6a2V5").encode()
HEC_KEY = re.compile(rb'"fields":\{"idempotency_key":"([^"\\]+)"')  # the connector writes the key first in fields
SUCCESS = b'{"text":"Success","code":0}'


def _fresh() -> dict[str, Any]:
    return {"events": 0, "duplicates": 0, "requests": 0, "bytes": 0, "first": None, "last": None, "ids": set()}


state = _fresh()


def _count(keys: list[bytes]) -> int:
    """Record ids; return how many were seen before."""
    ids: set[bytes] = state["ids"]
    before = len(ids)
    ids.update(keys)
    dups = len(keys) - (len(ids) - before)
    now = time.time()
    state["events"] += len(keys)
    state["duplicates"] += dups
    state["requests"] += 1
    state["first"] = state["first"] or now
    state["last"] = now
    return dups


def hec(headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes]:
    if headers.get(b"authorization") != b"Splunk " + HEC_TOKEN:
        return 401, b'{"text":"Invalid authorization","code":3}'
    if headers.get(b"content-encoding") == b"gzip":
        body = gzip.decompress(body)
    lines = [line for line in body.split(b"\n") if line.strip()]
    if not lines:
        return 400, b'{"text":"No data","code":5}'
    keys = HEC_KEY.findall(body)
    if len(keys) != len(lines):  # not the connector's layout: decode every envelope
        keys = []
        for i, line in enumerate(lines):
            try:
                doc = orjson.loads(line)
                keys.append(str(doc["fields"]["idempotency_key"]).encode())
                if doc.get("event") in (None, ""):
                    raise KeyError("event")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return 400, b'{"text":"Invalid data format","code":6,"invalid-event-number":%d}' % i
    _count(keys)
    return 200, SUCCESS


def _filtered(doc: dict[str, Any], patterns: list[str]) -> dict[str, Any]:
    """Elasticsearch's filter_path for ``key`` and ``items.*.key[.sub]`` patterns (enough for the hub's)."""
    out: dict[str, Any] = {k: v for k, v in doc.items() if k in patterns}
    item_keys = [p.split(".", 2)[2] for p in patterns if p.startswith("items.*.")]
    if item_keys and "items" in doc:
        items = []
        for item in doc["items"]:
            (op, result), = item.items()
            kept: dict[str, Any] = {}
            for key in item_keys:
                head, _, sub = key.partition(".")
                if head in result:
                    if sub:
                        if sub in result[head]:
                            kept.setdefault(head, {})[sub] = result[head][sub]
                    else:
                        kept[head] = result[head]
            items.append({op: kept})
        out["items"] = items
    return out


def bulk(headers: dict[bytes, bytes], body: bytes, query: bytes) -> tuple[int, bytes]:
    started = time.perf_counter()
    if headers.get(b"authorization") != b"ApiKey " + API_KEY:
        return 401, (b'{"error":{"type":"security_exception","reason":"unable to authenticate with provided '
                     b'credentials"},"status":401}')
    if headers.get(b"content-encoding") == b"gzip":
        body = gzip.decompress(body)
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    else:
        return 400, (b'{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be '
                     b'terminated by a newline [\\n]"},"status":400}')
    if len(lines) % 2:
        return 400, (b'{"error":{"type":"illegal_argument_exception","reason":"an action without a document"},'
                     b'"status":400}')
    items, keys, batch = [], [], set()
    seen: set[bytes] = state["ids"]
    for i in range(0, len(lines), 2):
        try:
            (op, meta), = orjson.loads(lines[i]).items()
            doc_ok = lines[i + 1][:1] == b"{" and lines[i + 1][-1:] == b"}"
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            return 400, b'{"error":{"type":"x_content_parse_exception","reason":"malformed action"},"status":400}'
        key = str(meta.get("_id", "")).encode()
        result = {"_index": meta.get("_index"), "_id": meta.get("_id"), "_version": 1, "result": "created",
                  "status": 201}
        if not doc_ok:
            result = {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 400,
                      "error": {"type": "document_parsing_exception", "reason": "not a JSON object"}}
        elif op == "create" and (key in seen or key in batch):
            result = {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": 409,
                      "error": {"type": "version_conflict_engine_exception",
                                "reason": f"[{meta.get('_id')}]: version conflict, document already exists"}}
        items.append({op: result})
        keys.append(key)
        batch.add(key)
    _count(keys)
    answer: dict[str, Any] = {"took": int((time.perf_counter() - started) * 1000),
                              "errors": any(next(iter(x.values()))["status"] >= 300 for x in items), "items": items}
    patterns = parse_qs(query.decode()).get("filter_path")
    if patterns:
        answer = _filtered(answer, patterns[0].split(","))
    return 200, orjson.dumps(answer)


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    body = b"".join(chunks)
    headers = dict(scope["headers"])
    state["bytes"] += len(body)
    path, method = scope["path"], scope["method"]
    status, out = 404, b'{"error":"not found"}'
    if path == "/services/collector/event" and method == "POST":
        status, out = hec(headers, body)
    elif path == "/_bulk" and method == "POST":
        status, out = bulk(headers, body, scope.get("query_string", b""))
    elif path == "/stats":
        stats = {k: v for k, v in state.items() if k != "ids"}
        stats["distinct"] = len(state["ids"])
        out, status = orjson.dumps(stats), 200
        if b"reset=1" in scope.get("query_string", b""):
            state.clear()
            state.update(_fresh())
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
