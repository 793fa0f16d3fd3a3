"""The platform adapters inside the running hub: events posted to /hooks/<source>, findings in the store.

Checks what only the pipeline shows: a SecuProbe scan resolves what the next scan no longer reports, a
failed scan resolves nothing, and partial SecureEndpoint webhooks resolve the finding they name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.app import create_app
from hub.config import load_config
from hub.runtime import Hub
from tests.adapters import test_secuprobe, test_secureendpoint
from tests.support import write_config

TOKEN = "adapter-test-token"


def source(adapter: str, **extra: Any) -> dict[str, Any]:
    return {"verify": {"scheme": "token", "header": "X-Token", "secrets": [TOKEN]}, "adapter": adapter, **extra}


class Client:
    def __init__(self, hub: Hub, http: httpx.AsyncClient):
        self.hub, self.http = hub, http

    async def post(self, src: str, body: dict[str, Any]) -> None:
        r = await self.http.post(f"/hooks/{src}", content=orjson.dumps(body),
                                 headers={"content-type": "application/json", "X-Token": TOKEN})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 10
        while self.hub.store.conn.execute("SELECT count(*) FROM events WHERE state = 'pending'").fetchone()[0]:
            assert time.monotonic() < deadline, "events were not processed"
            await asyncio.sleep(0.02)

    def findings(self, src: str) -> dict[str, tuple[str, str]]:
        rows = self.hub.store.conn.execute("SELECT title, status, severity FROM findings WHERE source = ?", (src,))
        return {title: (status, severity) for title, status, severity in rows.fetchall()}

    def failed(self) -> list[str]:
        return [r[0] for r in self.hub.store.conn.execute("SELECT error FROM events WHERE state = 'failed'")]


@pytest.fixture
async def hub_client(tmp_path: Path) -> AsyncIterator[Client]:
    data = {"storage": {"path": str(tmp_path / "hub.db")},
            "sources": {"probe": source("secuprobe"),
                        "se": source("secureendpoint", fingerprint={"use": "tool_id"})},
            "pipeline": {"safety_net_secs": 0.2}}
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)))
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)),
                                     base_url="http://hub.test") as http:
            yield Client(hub, http)
    finally:
        await hub.aclose()


async def test_a_secuprobe_scan_resolves_what_the_next_one_no_longer_reports(hub_client: Client):
    csp, hsts = test_secuprobe.VULNS["vulnerabilities"][0], test_secuprobe.HSTS
    await hub_client.post("probe", test_secuprobe.combined(csp, hsts))
    assert hub_client.findings("probe") == {"Missing Content-Security-Policy": ("open", "high"),
                                            "Missing Strict-Transport-Security": ("open", "medium")}
    await hub_client.post("probe", test_secuprobe.combined(hsts, status="failed"))  # resolves nothing
    assert {s for s, _ in hub_client.findings("probe").values()} == {"open"}
    other_site = test_secuprobe.combined(url="https://other.example")  # another URL's scope
    await hub_client.post("probe", other_site)
    assert {s for s, _ in hub_client.findings("probe").values()} == {"open"}
    await hub_client.post("probe", test_secuprobe.combined({**hsts, "id": "vuln-new-id"}))  # CSP was fixed
    assert hub_client.findings("probe") == {"Missing Content-Security-Policy": ("resolved", "high"),
                                            "Missing Strict-Transport-Security": ("open", "medium")}
    assert hub_client.failed() == []


async def test_secureendpoint_partial_webhooks_update_and_resolve_the_finding(hub_client: Client):
    se = test_secureendpoint
    await hub_client.post("se", se.PAGE)
    await hub_client.post("se", se.webhook("finding.severity_changed", severity="high", cvss=7.4))
    assert hub_client.findings("se") == {"End-of-life software: OpenSSL 1.0.2": ("open", "high")}
    await hub_client.post("se", {"event": "ticket.closed", "timestamp": "2026-03-11T00:00:00Z",
                                 "data": {"ticket_id": "INC0423891"}})
    await hub_client.post("se", se.webhook("finding.resolved"))
    assert hub_client.findings("se") == {"End-of-life software: OpenSSL 1.0.2": ("resolved", "high")}
    assert hub_client.failed() == []


async def test_a_bad_payload_fails_its_event_with_the_adapter_message(hub_client: Client):
    await hub_client.post("se", {"event": "finding.created", "data": {"severity": "high"}})
    assert hub_client.failed() == ["SecureEndpoint finding.created data: finding_id (or id) is missing"]
