"""The hub's own API: scoped tokens in every state, bulk ingest with per-item errors, listing and
pagination, rate limits, the audit log, and an OpenAPI document that matches the real routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from hub import tokens
from hub.api import ENDPOINTS, openapi
from hub.app import create_app
from hub.cli import main
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import events as event_rows
from hub.store import tokens as token_rows
from tests.support import EVERY, base_config, findings_of, write_config

SEED_PAYLOAD = {  # Strobes' API document: the documented bulk payload, plus ids and a bad item
    "scanner_name": "internal_binary_scanner", "project_id": "infra-prod",
    "findings": [
        {"id": "sast-1", "title": "Buffer Overflow in auth_service", "severity": "critical",
         "description": "Exploitable input overflow in login module", "asset_identifier": "svc-auth-prod",
         "file": "/opt/auth_service/auth.py", "tags": ["external"]},
        {"id": "sast-2", "title": "Hard-coded secret", "severity": "High", "asset_identifier": "svc-pay"},
        {"id": "sast-3", "severity": "medium", "asset_identifier": "svc-x"},  # no title
        {"id": "sast-4", "title": "Weird", "severity": "catastrophic"},
        "not an object",
    ],
}


class Api:
    def __init__(self, hub: Hub, client: httpx.AsyncClient, config: Path, skew: list[float] | None = None):
        self.hub, self.client, self.config = hub, client, config
        self.skew = skew if skew is not None else [0.0]  # seconds the fixture hub's clock runs ahead of time.time()

    def token(self, *scopes: str, name: str = "ci", days: int | None = None) -> str:
        args = ["tokens", "create", "--config", str(self.config), "--name", name]
        args += [a for s in scopes for a in ("--scope", s)] + (["--expires-days", str(days)] if days else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[0]

    async def call(self, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.client.request(method, path, headers=headers, **kw)

    async def settle(self) -> None:
        for _ in range(200):
            if not event_rows.counts(self.hub.store.conn).get("pending"):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("events still pending")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    data = base_config(tmp_path, api={"rate_limit_per_min": 1000})
    config = write_config(tmp_path / "hub.yaml", data)
    skew = [0.0]
    hub = Hub(load_config(config), clock=lambda: time.time() + skew[0])
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub), client=("198.51.100.9", 1)),
                                     base_url="http://hub.test") as client:
            yield Api(hub, client, config, skew)
    finally:
        await hub.aclose()


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    doc = r.json()
    assert doc["ok"] is False and doc["code"] == code and doc["status"] == status and doc["error"]


async def test_token_states_and_scopes(api):
    ingest, read = api.token("ingest"), api.token("read", name="dash")
    assert_error(await api.call("GET", "/api/v1/findings", None), 401, "unauthorized")
    assert_error(await api.call("GET", "/api/v1/findings", "not-a-token"), 401, "invalid_token")
    forged = read[:-4] + ("AAAA" if not read.endswith("AAAA") else "BBBB")
    assert_error(await api.call("GET", "/api/v1/findings", forged), 401, "invalid_token")
    r = await api.client.get("/api/v1/findings", headers={"authorization": f"Basic {read}"})
    assert_error(r, 401, "invalid_token")
    assert_error(await api.call("GET", "/api/v1/findings", ingest), 403, "forbidden")
    assert_error(await api.call("POST", "/api/v1/findings", read, json=SEED_PAYLOAD), 403, "forbidden")
    assert (await api.call("GET", "/api/v1/findings", read)).status_code == 200
    assert_error(await api.call("POST", "/api/v1/deliveries/replay", read, json={}), 403, "forbidden")
    admin = api.token("admin", name="ops")
    assert (await api.call("GET", "/api/v1/findings", admin)).status_code == 200  # admin implies every scope
    ident = tokens.token_id(read)
    revoked = CliRunner().invoke(main, ["tokens", "revoke", ident, "--config", str(api.config)])
    assert revoked.exit_code == 0
    assert_error(await api.call("GET", "/api/v1/findings", read), 401, "token_revoked")
    expiring = api.token("read", name="short", days=1)
    api.skew[0] = 2 * 86400
    assert_error(await api.call("GET", "/api/v1/findings", expiring), 401, "token_expired")


async def test_tokens_are_stored_hashed_and_listed_without_secrets(api):
    token = api.token("read")
    [listed_row] = token_rows.listing(api.hub.store.conn)
    row = token_rows.by_id(api.hub.store.conn, listed_row["id"])
    assert row is not None and token not in str(row) and row["hash"] == tokens.digest(token)
    listed = CliRunner().invoke(main, ["tokens", "list", "--config", str(api.config), "--json"]).output
    assert token not in listed and tokens.digest(token) not in listed and '"scopes":["read"]' in listed


async def test_bulk_ingest_reports_each_invalid_item_and_processes_the_rest(api):
    token = api.token("ingest", "read")
    r = await api.call("POST", "/api/v1/findings", token, json=SEED_PAYLOAD)
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["status"] == "accepted" and doc["accepted"] == 2 and doc["rejected"] == 3
    assert [e["index"] for e in doc["errors"]] == [2, 3, 4]
    assert "title is missing" in doc["errors"][0]["message"] and "catastrophic" in doc["errors"][1]["message"]
    await api.settle()
    listed = (await api.call("GET", "/api/v1/findings", token)).json()
    assert listed["meta"] == {"page": 1, "limit": 50, "total": 2, "pages": 1}
    titles = {f["title"]: f for f in listed["data"]}
    assert titles["Buffer Overflow in auth_service"]["severity"] == "critical"
    assert titles["Buffer Overflow in auth_service"]["location"] == "/opt/auth_service/auth.py"
    assert titles["Hard-coded secret"]["source"] == "api" and titles["Hard-coded secret"]["scanner"] == \
        "internal_binary_scanner"
    # the same payload again: duplicate event; the same items in another envelope: no new findings
    assert (await api.call("POST", "/api/v1/findings", token, json=SEED_PAYLOAD)).json()["status"] == "duplicate"
    again = {**SEED_PAYLOAD, "project_id": "infra-prod-2"}
    assert (await api.call("POST", "/api/v1/findings", token, json=again)).status_code == 202
    await api.settle()
    assert (await api.call("GET", "/api/v1/findings", token)).json()["meta"]["total"] == 2


async def test_single_finding_and_invalid_bodies(api):
    token = api.token("ingest")
    one = {"id": "x-1", "title": "One", "severity": "low", "asset_identifier": "a"}
    r = await api.call("POST", "/api/v1/findings", token, json=one)
    assert r.status_code == 202 and r.json()["accepted"] == 1
    assert_error(await api.call("POST", "/api/v1/findings", token, content=b"{nope"), 400, "invalid_json")
    assert_error(await api.call("POST", "/api/v1/findings", token, json=[1, 2]), 400, "invalid_payload")
    assert_error(await api.call("POST", "/api/v1/findings", token, json={"findings": {}}), 400, "invalid_payload")
    for envelope in ({"scanner_name": {}}, {"project_id": ["infra"]}):  # the schema says strings (schemathesis)
        r = await api.call("POST", "/api/v1/findings", token, json={**envelope, "findings": [one]})
        assert_error(r, 400, "invalid_payload")
    r = await api.call("POST", "/api/v1/findings", token, json={"findings": [{"severity": "high"}]})
    assert_error(r, 422, "no_valid_findings")
    assert r.json()["errors"][0]["index"] == 0


async def test_filters_pagination_and_one_finding_with_history(api):
    token = api.token("ingest", "read")
    items = [{"id": f"f-{i}", "title": f"Finding {i}", "severity": ["critical", "low"][i % 2],
              "asset_identifier": f"h{i}", "tags": ["external"] if i < 3 else ["internal"]} for i in range(7)]
    await api.call("POST", "/api/v1/findings", token, json={"scanner_name": "s", "findings": items})
    await api.call("POST", "/api/v1/findings", token, json={"scanner_name": "s", "findings": [
        {"id": "f-0", "title": "Finding 0", "severity": "critical", "asset_identifier": "h0", "status": "resolved"}]})
    await api.settle()

    async def get(query: str) -> dict[str, Any]:
        r = await api.call("GET", f"/api/v1/findings?{query}", token)
        assert r.status_code == 200, r.text
        return r.json()

    assert (await get("severity=critical"))["meta"]["total"] == 4
    assert (await get("severity=CRITICAL&status=open"))["meta"]["total"] == 3
    assert (await get("status=resolved"))["data"][0]["tool_id"] == "f-0"
    assert (await get("asset_tag=external"))["meta"]["total"] == 3
    assert (await get("search=Finding%205"))["meta"]["total"] == 1
    assert (await get("source=api"))["meta"]["total"] == 7 and (await get("source=nope"))["meta"]["total"] == 0
    assert (await get("created_after=2000-01-01"))["meta"]["total"] == 7
    assert (await get("created_after=2999-01-01T00:00:00Z"))["meta"]["total"] == 0
    page3 = await get("limit=3&page=3")
    assert page3["meta"] == {"page": 3, "limit": 3, "total": 7, "pages": 3} and len(page3["data"]) == 1
    beyond = await get("limit=3&page=9")
    assert beyond["data"] == [] and beyond["meta"]["total"] == 7
    for bad in ("limit=0", "limit=101", "page=0", "page=x", "severity=urgent", "status=closed", "created_after=soon",
                "colour=red"):
        assert_error(await api.call("GET", f"/api/v1/findings?{bad}", token), 400, "invalid_parameter")
    resolved = (await get("status=resolved"))["data"][0]
    one = (await api.call("GET", f"/api/v1/findings/{resolved['id']}", token)).json()["data"]
    assert [h["event_type"] for h in one["history"]] == ["finding.created", "finding.resolved"]
    assert one["external_refs"] == {} and one["raw"]["id"] == "f-0"
    assert_error(await api.call("GET", "/api/v1/findings/fnd_nope", token), 404, "not_found")


async def test_rate_limit_headers_and_429(tmp_path):
    config = write_config(tmp_path / "hub.yaml", base_config(tmp_path, api={"rate_limit_per_min": 3}))
    hub = Hub(load_config(config), clock=lambda: 1_800_000_010.0)  # 10 s into a minute window
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)),
                                     base_url="http://hub.test") as client:
            api = Api(hub, client, config)
            token = api.token("read")
            answers = [await api.call("GET", "/api/v1/findings", token) for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
            assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
            assert answers[0].headers["x-ratelimit-reset"] == "1800000060"
            assert_error(answers[3], 429, "rate_limited")
            assert answers[3].headers["retry-after"] == "50"
            other = api.token("read", name="other")  # limits are per token
            assert (await api.call("GET", "/api/v1/findings", other)).status_code == 200
    finally:
        await hub.aclose()


async def test_every_call_is_audited_without_secrets(api):
    token = api.token("read")
    await api.call("GET", "/api/v1/findings?severity=high", token)
    await api.call("GET", "/api/v1/findings", "fh_0123456789_wrong")
    await api.call("POST", "/api/v1/findings", token, json={})
    rows = token_rows.audit_listing(api.hub.store.conn, limit=EVERY)[::-1]
    actions = [(r["action"], r["result"]) for r in rows]
    assert ("tokens.create", "ok") in actions
    assert ("findings.list", "200") in actions
    assert ("findings.list", "401 invalid_token") in actions
    assert ("findings.ingest", "403 forbidden") in actions
    assert any(r["actor"].startswith("token:ci (") for r in rows)
    assert all(token not in str(row) and "wrong" not in str(row) for row in rows)
    assert rows[-1]["remote_addr"] == "198.51.100.9"
    shown = CliRunner().invoke(main, ["audit", "--config", str(api.config), "--limit", "2"]).output
    assert "findings.ingest" in shown


async def test_replay_and_token_endpoints(api):
    admin = api.token("admin")
    r = await api.call("POST", "/api/v1/tokens", admin, json={"name": "bot", "scopes": ["read"], "expires_days": 30})
    assert r.status_code == 201 and r.json()["token"].startswith("fh_") and "hash" not in r.json()["data"]
    new_id = r.json()["data"]["id"]
    assert (await api.call("GET", "/api/v1/findings", r.json()["token"])).status_code == 200
    assert (await api.call("DELETE", f"/api/v1/tokens/{new_id}", admin)).json()["revoked"] == new_id
    assert_error(await api.call("DELETE", f"/api/v1/tokens/{new_id}", admin), 404, "not_found")
    assert_error(await api.call("POST", "/api/v1/tokens", admin, json={"name": "x", "scopes": ["root"]}), 400,
                 "invalid_payload")
    assert (await api.call("POST", "/api/v1/deliveries/replay", admin, json={"state": "dead"})).json()["replayed"] == 0
    assert_error(await api.call("POST", "/api/v1/deliveries/dlv_999/replay", admin), 404, "not_replayable")
    assert_error(await api.call("POST", "/api/v1/deliveries/replay", admin, json={"state": "pending"}), 400,
                 "invalid_payload")


async def test_openapi_matches_the_real_routes(api):
    r = await api.client.get("/api/v1/openapi.json")
    doc = r.json()
    assert doc == orjson.loads(orjson.dumps(openapi()))
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    from starlette.routing import Route

    app = create_app(api.hub).app  # type: ignore[attr-defined]
    served = {(route.path, m) for route in app.routes if isinstance(route, Route)
              and route.path.startswith("/api/v1/") and route.path != "/api/v1/openapi.json"
              for m in (route.methods or set()) - {"HEAD"}}
    assert documented == served
    for ep in ENDPOINTS:
        op = doc["paths"][ep.path][ep.method.lower()]
        assert op["x-scope"] == ep.scope and str(ep.status) in op["responses"]
        for name in {p.name for p in ep.params if p.where == "path"}:
            assert "{" + name + "}" in ep.path
    assert "Finding" in doc["components"]["schemas"] and "Asset" in doc["components"]["schemas"]
    refs = orjson.dumps(doc).decode()
    assert "#/$defs" not in refs  # every $ref resolves inside components


async def test_list_and_detail_agree_on_external_refs(api):
    """The list read findings without their tickets (``external_refs`` always {}), the detail with them."""
    from hub.store import findings as finding_rows

    token = api.token("ingest", "read")
    await api.call("POST", "/api/v1/findings", token, json={"scanner_name": "s", "findings": [
        {"id": "r-1", "title": "Ticketed", "severity": "high"}, {"id": "r-2", "title": "Not yet", "severity": "low"}]})
    await api.settle()
    [found] = findings_of(api.hub.store.conn, "r-1")
    fid = found.id

    def link(conn: Any) -> None:
        finding_rows.claim_ref(conn, fid, "linear", "2026-01-01T00:00:00Z")
        finding_rows.link_ref(conn, fid, "linear", "LIN-7", "https://linear.app/x/issue/LIN-7", "Todo",
                              "2026-01-01T00:00:00Z")

    await api.hub.store.write(link)
    listed = {f["id"]: f for f in (await api.call("GET", "/api/v1/findings", token)).json()["data"]}
    for finding_id, item in listed.items():
        detail = (await api.call("GET", f"/api/v1/findings/{finding_id}", token)).json()["data"]
        assert item["external_refs"] == detail["external_refs"]
    assert listed[fid]["external_refs"] == {"linear": {"id": "LIN-7", "url": "https://linear.app/x/issue/LIN-7",
                                                       "status": "Todo"}}
