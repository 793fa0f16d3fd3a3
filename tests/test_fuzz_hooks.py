"""Property fuzz of ``POST /hooks/<source>`` for every signature scheme (hypothesis).

Requests go straight into the ASGI app (no HTTP client in between), so headers can be any bytes a server
could pass on, ``content-length`` included. Some are properly signed over hostile bodies, timestamps, ids
and content types; some are unsigned garbage. Whatever comes in: never a 5xx, every error in the one
documented shape, and a rejected request stores nothing (an accepted one stores exactly one event).
``FUZZ_EXAMPLES`` bounds the examples per scheme; the totals are printed in pytest's summary (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import signatures
from hub.app import create_app
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import events as event_rows
from tests.support import HMAC_SECRET, SW_SECRET, write_config

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25")) * 4  # per scheme; cheap, no network
SENT: dict[str, int] = {"requests": 0, "5xx": 0, "accepted": 0}
SECRET = "fuzz-secret"
SOURCES = {  # source name -> verify block; one per scheme
    "hmac": {"scheme": "hmac-sha256", "header": "X-Sig", "prefix": "sha256=", "secrets": [HMAC_SECRET]},
    "github": {"scheme": "github", "secrets": [SECRET]},
    "sw": {"scheme": "standard-webhooks", "secrets": [SW_SECRET]},
    "stripe": {"scheme": "stripe", "secrets": [SECRET]},
    "slack": {"scheme": "slack", "secrets": [SECRET]},
    "shopify": {"scheme": "shopify", "secrets": [SECRET]},
    "token": {"scheme": "token", "header": "X-Token", "secrets": [SECRET]},
}
ERROR_KEYS = {"ok", "code", "error", "errors", "status"}


def _mac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def signed_headers(source: str, body: bytes, ts: str, msg_id: str) -> dict[str, str]:
    """What an honest sender holding the secret would send, with the timestamp and id taken as given (so a
    hostile timestamp still carries a valid signature and reaches the freshness check)."""
    cfg = SOURCES[source]
    if source == "stripe":
        return {"stripe-signature": f"t={ts},v1={_mac(SECRET.encode(), ts.encode() + b'.' + body).hex()}"}
    if source == "slack":
        sig = _mac(SECRET.encode(), b"v0:" + ts.encode() + b":" + body).hex()
        return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={sig}"}
    if source == "sw":
        key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
        signed = msg_id.encode() + b"." + ts.encode() + b"." + body
        return {"webhook-id": msg_id, "webhook-timestamp": ts,
                "webhook-signature": "v1," + base64.b64encode(_mac(key, signed)).decode()}
    scheme = signatures.build(cfg["scheme"], cfg["secrets"], header=cfg.get("header"), prefix=cfg.get("prefix", ""))
    return {k.lower(): v for k, v in scheme.sign(body, time.time(), msg_id).items()}


# Header values as a server passes them on: latin-1 text without line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
hostile_bodies = st.sampled_from([
    b"", b"null", b"[]", b'"x"', b"[" * 300 + b"]" * 300, b'{"a":' * 70 + b"1" + b"}" * 70,
    b'{"id": ' + b"9" * 5000 + b"}", b'{"id": 1e999}', b"\xff\xfe\x00", b'{"id": "\\ud800"}', b"NaN",
    b'{"id": {"nested": [1, 2]}}', b"a=1&b=2", b"{" * 2000, b'{"findings": [' + b'{"title": "t"},' * 50 + b"{}]}",
])
bodies = st.one_of(hostile_bodies, json_values.map(orjson.dumps), st.binary(max_size=300))
timestamps = st.one_of(
    st.just("now"), st.just("now"), st.just("now"),  # a fresh, valid timestamp more often than any hostile one
    st.integers(-(10**20), 10**20).map(str), st.just(str(10**400)), st.just("9" * 5000),
    st.sampled_from(["", " ", "²", "١٢٣", "+1", "1_000", "1e9", "0x10", "-0", "1.5", "\x00"]),
    st.text("0123456789", min_size=1, max_size=25))
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "application/cloudevents+json",
                                 "application/x-www-form-urlencoded", "text/plain", "", "\xff/\xfe", "multipart/x"])
lengths = st.sampled_from([None, "honest", "²", "-1", "0", "9" * 30, "1 2", "4294967296", "abc"])


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(st.sampled_from([*SOURCES, "nope", "sw/x", "", "%2e%2e", "ünïcode"]))
    body = draw(bodies)
    signed = source in SOURCES and draw(st.booleans() | st.just(True))  # signed more often than not
    ts = draw(timestamps)
    ts = str(int(time.time())) if ts == "now" else ts
    headers: dict[str, str] = {}
    if signed:
        headers.update(signed_headers(source, body, ts, draw(header_text)))
    else:
        headers.update(draw(st.dictionaries(st.sampled_from(
            ["x-sig", "x-hub-signature-256", "stripe-signature", "x-slack-signature", "x-slack-request-timestamp",
             "webhook-id", "webhook-timestamp", "webhook-signature", "svix-signature", "x-shopify-hmac-sha256",
             "x-token", "authorization", "x-github-delivery"]), header_text, max_size=5)))
    ctype = draw(content_types)
    if ctype:
        headers["content-type"] = ctype
    length = draw(lengths)
    if length is not None:
        headers["content-length"] = str(len(body)) if length == "honest" else length
    headers.update(draw(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12), header_text,
                                        max_size=3)))
    chunks = draw(st.integers(1, 3))
    return {"source": source, "body": body, "headers": headers, "chunks": chunks,
            "method": draw(st.sampled_from(["POST"] * 8 + ["GET", "PUT"]))}


class Driver:
    """A hub on its own event loop, driven one request at a time from a synchronous hypothesis test."""

    def __init__(self, tmp: Path):
        data = {"storage": {"path": str(tmp / "hub.db")}, "server": {"max_body_bytes": 65536},
                "sources": {name: {"verify": verify} for name, verify in SOURCES.items()}}
        self.loop = asyncio.new_event_loop()
        self.hub = Hub(load_config(write_config(tmp / "hub.yaml", data)), scheduler=False)
        self.loop.run_until_complete(self.hub.start())
        self.app = create_app(self.hub)

    def close(self) -> None:
        self.loop.run_until_complete(self.hub.aclose())
        self.loop.close()

    def events(self) -> int:
        return sum(event_rows.counts(self.hub.store.conn).values())

    def post(self, req: dict[str, Any]) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self._post(req))

    async def _post(self, req: dict[str, Any]) -> tuple[int, bytes]:
        body, n = req["body"], req["chunks"]
        step = max(1, len(body) // n)
        parts = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
        messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
        path = "/hooks/" + req["source"]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": req["method"],
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(k.encode(), v.encode()) for k, v in req["headers"].items()],
                 "client": ("203.0.113.7", 50000), "server": ("hub.test", 80)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    d = Driver(tmp_path_factory.mktemp("fuzz-hooks"))
    try:
        yield d
    finally:
        d.close()


@settings(max_examples=EXAMPLES * len(SOURCES), deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@pytest.mark.slow
@given(req=requests())
def test_hooks_never_answer_5xx_and_store_nothing_they_reject(driver: Driver, req: dict[str, Any]):
    before = driver.events()
    status, body = driver.post(req)
    SENT["requests"] += 1
    SENT["5xx"] += status >= 500
    assert status < 500, (status, body, req)
    after = driver.events()
    if status >= 400:
        doc = orjson.loads(body)
        assert set(doc) == ERROR_KEYS and doc["ok"] is False and doc["status"] == status, doc
        assert isinstance(doc["code"], str) and doc["error"] and doc["errors"], doc
        assert after == before, f"a rejected request ({status} {doc['code']}) stored an event"
    else:
        assert status in (200, 202) and req["source"] in SOURCES, (status, body)
        assert after == before + (status == 202)
        SENT["accepted"] += status == 202
