"""The receiver's answers, error shape, replay protection, size limits and store failures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import signatures
from hub.app import create_app
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import events as event_rows
from tests.support import HMAC_SECRET, SW_SECRET, base_config, events_of, force, store_at, write_config

BODY = json.dumps({"event": "finding.created", "data": {"finding_id": "fnd_1", "severity": "critical"}}).encode()


def se_headers(body: bytes, secret: str = HMAC_SECRET) -> dict[str, str]:
    return {"content-type": "application/json",
            "x-se-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def sw_headers(body: bytes, msg_id: str = "msg_1", now: float | None = None) -> dict[str, str]:
    signed = signatures.build("standard-webhooks", [SW_SECRET]).sign(body, time.time() if now is None else now, msg_id)
    return {"content-type": "application/json", **signed}


def rows(hub: Hub) -> list[dict[str, Any]]:
    with store_at(hub.config.db_path) as conn:  # a separate connection: what is committed
        summaries = events_of(conn)
        stored = event_rows.by_ids(conn, [e["id"] for e in summaries])
        return [{**e, "body": stored[e["id"]].body, "headers": stored[e["id"]].headers} for e in summaries]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc["ok"] is False and doc["status"] == status and doc["code"] == code
    assert isinstance(doc["error"], str) and doc["error"]
    assert doc["errors"] == [{"code": code, "message": doc["error"]}]
    return doc


async def test_valid_event_is_committed_before_202(client, hub):
    r = await client.post("/hooks/se", content=BODY, headers=se_headers(BODY))
    assert r.status_code == 202
    doc = r.json()
    assert doc["status"] == "accepted" and doc["id"].startswith("evt_")
    [row] = rows(hub)
    assert f"evt_{row['seq']}" == doc["id"]
    assert row["body"] == BODY and row["source"] == "se" and row["state"] in ("pending", "processed")
    assert row["verified_by"] == "hmac-sha256" and row["content_type"] == "application/json"
    headers = json.loads(row["headers"])
    assert headers["x-se-signature"] == "[redacted]" and headers["content-type"] == "application/json"


async def test_stored_headers_never_keep_secrets(client, hub):
    extra = {"authorization": "Bearer abc", "cookie": "s=1", "x-api-key": "k", "x-gitlab-token": "t",
             "x-request-id": "r-1"}
    r = await client.post("/hooks/se", content=BODY, headers={**se_headers(BODY), **extra})
    assert r.status_code == 202
    stored = json.loads(rows(hub)[0]["headers"])
    for name in ("authorization", "cookie", "x-api-key", "x-gitlab-token", "x-se-signature"):
        assert stored[name] == "[redacted]"
    assert stored["x-request-id"] == "r-1"


async def test_invalid_signature_is_401_and_nothing_is_stored(client, hub, caplog):
    headers = {**se_headers(BODY, "wrong"), "authorization": "Bearer zzz"}
    r = await client.post("/hooks/se", content=BODY, headers=headers)
    assert_error(r, 401, "invalid_signature")
    assert rows(hub) == []
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "invalid_signature" in logged and "203.0.113.7" in logged
    assert se_headers(BODY, "wrong")["x-se-signature"] not in logged and "zzz" not in logged


async def test_missing_signature_header_is_401(client, hub):
    r = await client.post("/hooks/se", content=BODY, headers={"content-type": "application/json"})
    doc = assert_error(r, 401, "invalid_signature")
    assert "x-se-signature" in doc["error"]


async def test_stale_timestamp_is_401_stale(client, hub):
    r = await client.post("/hooks/sw", content=BODY, headers=sw_headers(BODY, now=time.time() - 3600))
    assert_error(r, 401, "stale_timestamp")
    assert rows(hub) == []


async def test_duplicate_webhook_id_is_answered_200_and_stored_once(client, hub):
    headers = sw_headers(BODY, "msg_dup")
    first = await client.post("/hooks/sw", content=BODY, headers=headers)
    second = await client.post("/hooks/sw", content=BODY, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert len(rows(hub)) == 1 and rows(hub)[0]["idempotency_key"] == "msg_dup"


async def test_concurrent_duplicates_in_one_batch_are_stored_once(client, hub):
    headers = sw_headers(BODY, "msg_race")
    answers = await asyncio.gather(*(client.post("/hooks/sw", content=BODY, headers=headers) for _ in range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 19 + [202]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(rows(hub)) == 1


@pytest.fixture
def config_data(tmp_path: Path) -> dict[str, Any]:
    data = base_config(tmp_path, server={"max_body_bytes": 2048})
    data["sources"]["ptr"] = {"verify": {"scheme": "hmac-sha256", "header": "X-Sig", "secrets": ["p"]},
                              "idempotency_key": "/meta/event~1id"}
    data["sources"]["slack"] = {"verify": {"scheme": "slack", "secrets": ["slack-secret"]}}
    data["sources"]["stripe"] = {"verify": {"scheme": "stripe", "secrets": ["whsec_stripe"]}}
    return data


async def test_json_pointer_idempotency_key(client, hub):
    def post(body: bytes):
        sig = hmac.new(b"p", body, hashlib.sha256).hexdigest()
        return client.post("/hooks/ptr", content=body, headers={"content-type": "application/json", "x-sig": sig})

    a = json.dumps({"meta": {"event/id": "e-1"}, "n": 1}).encode()
    b = json.dumps({"meta": {"event/id": "e-1"}, "n": 2}).encode()
    c = json.dumps({"meta": {"event/id": 42}}).encode()
    d = json.dumps({"meta": {}}).encode()  # no key: stored, never deduplicated by key
    e = json.dumps({"meta": {}, "n": 3}).encode()  # (the same body again would be a replay: test_replay.py)
    assert [(await post(x)).status_code for x in (a, b, c, c, d, e)] == [202, 200, 202, 200, 202, 202]
    assert [r["idempotency_key"] for r in rows(hub)] == ["e-1", "42", None, None]


async def test_stripe_event_id_in_body_is_the_default_key(client, hub):
    body = json.dumps({"id": "evt_stripe_1", "type": "invoice.paid"}).encode()
    headers = {"content-type": "application/json",
               **signatures.build("stripe", ["whsec_stripe"]).sign(body, time.time())}
    assert (await client.post("/hooks/stripe", content=body, headers=headers)).status_code == 202
    assert (await client.post("/hooks/stripe", content=body, headers=headers)).status_code == 200
    assert rows(hub)[0]["idempotency_key"] == "evt_stripe_1"


async def test_slack_form_body_is_stored_as_received(client, hub):
    body = b"token=x&command=%2Ffinding&text=hello+world&trigger_id=1.2.3"
    headers = {"content-type": "application/x-www-form-urlencoded",
               **signatures.build("slack", ["slack-secret"]).sign(body, time.time())}
    r = await client.post("/hooks/slack", content=body, headers=headers)
    assert r.status_code == 202
    assert rows(hub)[0]["body"] == body


async def test_form_body_to_a_json_source_is_415(client, hub):
    body = b"a=1"
    r = await client.post("/hooks/se", content=body,
                          headers={**se_headers(body), "content-type": "application/x-www-form-urlencoded"})
    doc = assert_error(r, 415, "unsupported_media_type")
    assert "application/json" in doc["error"]
    assert rows(hub) == []


async def test_invalid_json_is_400(client, hub):
    body = b'{"event": '
    assert_error(await client.post("/hooks/se", content=body, headers=se_headers(body)), 400, "invalid_json")
    assert rows(hub) == []


async def test_json_with_charset_and_vendor_types_accepted(client, hub):
    for n, ctype in enumerate(("application/json; charset=utf-8", "application/vnd.api+json", "")):
        body = BODY.replace(b"{", b'{"n": %d, ' % n, 1)  # one body each: the same one again is a replay
        r = await client.post("/hooks/se", content=body, headers={**se_headers(body), "content-type": ctype})
        assert r.status_code == 202, (ctype, r.text)


async def test_oversize_body_is_413_by_declared_length(client, hub):
    body = b'{"x": "' + b"a" * 4096 + b'"}'
    r = await client.post("/hooks/se", content=body, headers=se_headers(body))
    assert_error(r, 413, "payload_too_large")
    assert r.headers["connection"] == "close"
    assert rows(hub) == []


async def test_oversize_streamed_body_stops_reading_at_the_limit(hub):
    """No Content-Length (chunked): the receiver stops pulling chunks once past the limit."""
    pulled = 0

    async def chunks():
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 1024

    transport = httpx.ASGITransport(app=create_app(hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        r = await c.post("/hooks/se", content=chunks(), headers={"content-type": "application/json",
                                                                  "x-se-signature": "00"})
    assert_error(r, 413, "payload_too_large")
    assert pulled < 10 and rows(hub) == []


async def test_unknown_source_and_wrong_method(client, hub):
    doc = assert_error(await client.post("/hooks/nope", content=BODY), 404, "unknown_source")
    assert "nope" in doc["error"]
    r = await client.get("/hooks/se")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error(await client.get("/no/such/page"), 404, "not_found")


async def test_health_ready_and_metrics(client, hub):
    assert (await client.get("/healthz")).json() == {"ok": True}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] is True
    await client.post("/hooks/se", content=BODY, headers=se_headers(BODY))
    await client.post("/hooks/se", content=BODY, headers=se_headers(BODY, "bad"))
    headers = sw_headers(BODY, "msg_m")
    await client.post("/hooks/sw", content=BODY, headers=headers)
    await client.post("/hooks/sw", content=BODY, headers=headers)
    text = (await client.get("/metrics")).text
    assert 'hub_webhooks_received_total{source="se"} 2.0' in text
    assert 'hub_webhooks_rejected_total{reason="invalid_signature",source="se"} 1.0' in text
    assert 'hub_events_stored_total{source="se"} 1.0' in text
    assert 'hub_events_duplicate_total{source="sw"} 1.0' in text
    assert 'hub_http_request_duration_seconds_count{route="hooks"} 4.0' in text


@pytest.mark.slow
@pytest.mark.sqlite_only  # SQLite's one write lock; PostgreSQL locks rows
async def test_store_locked_by_another_process_gives_503_and_no_row(tmp_path):
    data = base_config(tmp_path, storage={"path": str(tmp_path / "hub.db"), "busy_timeout_ms": 50})
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)))
    await hub.start()
    other = sqlite3.connect(hub.store.path, isolation_level=None)
    try:
        transport = httpx.ASGITransport(app=create_app(hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
            force(other, "BEGIN IMMEDIATE")  # another writer holds the lock longer than busy_timeout
            r = await client.post("/hooks/se", content=BODY, headers=se_headers(BODY))
            doc = assert_error(r, 503, "unavailable")
            assert r.headers["retry-after"] == "5" and "locked" in doc["error"]
            assert (await client.get("/readyz")).status_code == 503
            force(other, "ROLLBACK")
            assert (await client.post("/hooks/se", content=BODY, headers=se_headers(BODY))).status_code == 202
        assert len(rows(hub)) == 1  # only the retried one
    finally:
        other.close()
        await hub.aclose()


@pytest.mark.sqlite_only  # the group commit's batch (PostgreSQL commits each write alone)
async def test_failed_commit_fails_every_request_of_the_batch(client, hub):
    """A transaction SQLite rolls back (as on I/O errors) answers 503 to every request that shared it."""
    with sqlite3.connect(hub.store.path) as db:
        force(db, "CREATE TRIGGER doomed BEFORE INSERT ON events WHEN CAST(NEW.body AS TEXT) LIKE '%doomed%' "
              "BEGIN SELECT RAISE(ROLLBACK, 'simulated disk failure'); END")
    doomed = b'{"doomed": true}'
    answers = await asyncio.gather(*(client.post("/hooks/se", content=b, headers=se_headers(b))
                                     for b in [BODY] * 5 + [doomed] + [BODY] * 5))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {202, 503} and statuses[5] == 503
    on_disk = rows(hub)
    assert len(on_disk) == statuses.count(202)  # every 202 is on disk, every 503 is not
    assert all(b"doomed" not in r["body"] for r in on_disk)


async def test_write_queue_full_is_503_not_a_hang(client, hub):
    writers = [getattr(hub.store, name, None) for name in ("writer", "intake")]  # PostgreSQL's intake has its own
    for writer in filter(None, writers):
        writer.max_pending = 0
    assert any(writers)
    r = await client.post("/hooks/se", content=BODY, headers=se_headers(BODY))
    assert_error(r, 503, "unavailable")
