"""The platform adapters inside the running hub: events posted to /hooks/<source>, findings in the store.

Checks what only the pipeline shows: a SecuProbe scan resolves what the next scan no longer reports, a
failed scan resolves nothing, and partial SecureEndpoint webhooks resolve the finding they name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub import signatures
from tests.adapters import test_secuprobe, test_secureendpoint
from tests.support import HubHarness, events_of, findings_of

TOKEN = "adapter-test-token"


def source(adapter: str, **extra: Any) -> dict[str, Any]:
    return {"verify": {"scheme": "token", "header": "X-Token", "secrets": [TOKEN]}, "adapter": adapter, **extra}


class Client(HubHarness):
    """Sources and no targets: a webhook is done with once its event is processed."""

    def settled(self, total: int | None = None) -> bool:
        return self.events("pending") == 0

    def findings(self, src: str) -> dict[str, tuple[str, str]]:
        return {f.title: (f.status, f.severity) for f in findings_of(self.hub.store.conn) if f.source == src}

    def failed(self) -> list[str]:
        return [e["error"] for e in events_of(self.hub.store.conn, state="failed")]


@pytest.fixture
async def hub_client(tmp_path: Path) -> AsyncIterator[Client]:
    data = {"storage": {"path": str(tmp_path / "hub.db")},
            "sources": {"probe": source("secuprobe"),
                        "se": source("secureendpoint", fingerprint={"use": "tool_id"})},
            "pipeline": {"safety_net_secs": 0.2}}
    token = signatures.build("token", [TOKEN], header="X-Token")
    async with Client.running(tmp_path, data, signer=token, wait=True) as client:  # each post waits
        yield client


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
