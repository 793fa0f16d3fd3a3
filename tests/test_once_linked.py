"""Once linked, always synced: a finding whose ticket exists at a target keeps its lifecycle there when it no
longer matches the route's `when` (a critical that drops to high must not leave its ticket open forever)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.linear import API_KEY, TEAM, FakeLinear
from tests.support import HubHarness, deliveries_of, scanner_source

LIFECYCLE = ["finding.created", "finding.updated", "finding.resolved", "finding.reopened"]


def config(tmp_path: Path, on: list[str] | None = None) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "severity": "item.severity",
                                               "tool_id": "item.id", "asset.identifier": "item.host"},
                                              status="item.state")},
        "routes": [{"name": "criticals", "on": on or LIFECYCLE, "when": 'finding.severity == "critical"',
                    "to": ["secops", "archive"]}],
        "targets": {
            "secops": {"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM, "url": "http://linear.test",
                       "rate_limit": {"per_sec": 1000}, "retry": {"schedule_secs": [0.05] * 3, "jitter": 0}},
            "archive": {"type": "file", "path": "out/archive.ndjson"},
        },
        "pipeline": {"safety_net_secs": 0.5},
    }


def finding(**kw: Any) -> dict[str, Any]:
    return {"id": "F-1", "title": "SQL injection in /login", "severity": "critical", "host": "web-1", "state": "open",
            **kw}


def deliveries(h: HubHarness, target: str) -> list[tuple[str, str, str]]:
    return [(d["route"], d["kind"], d["state"]) for d in deliveries_of(h.hub.store.conn, target=target)]


@pytest.mark.slow
async def test_a_critical_that_drops_to_high_keeps_its_ticket_in_sync_until_it_is_closed(tmp_path):
    fake = FakeLinear()
    transports = {"secops": httpx.ASGITransport(app=fake.app)}
    async with HubHarness.running(tmp_path, config(tmp_path), transports, scheduler=False, timeout=20.0) as h:
        await h.send([finding()])
        await h.until(lambda: h.settled(2))
        [issue] = fake.issues.values()
        assert issue["priority"] == 1
        await h.send([finding(severity="high")])  # no longer matches `when`; its ticket exists
        await h.until(lambda: h.settled(3))
        assert issue["priority"] == 2 and issue["title"].startswith("[HIGH]")
        await h.send([finding(severity="high", state="fixed")])
        await h.until(lambda: h.settled(4))
        assert fake.view(issue)["state"]["type"] == "completed"
        assert deliveries(h, "secops") == [("criticals", k, "done") for k in
                                           ("finding.created", "finding.updated", "finding.resolved")]
        # the archive has no ticket to keep current: it got what the route's `when` let through, and no more
        assert deliveries(h, "archive") == [("criticals", "finding.created", "done")]


@pytest.mark.slow
async def test_a_finding_that_never_matched_and_a_kind_no_route_takes_are_not_sent(tmp_path):
    fake = FakeLinear()
    transports = {"secops": httpx.ASGITransport(app=fake.app)}
    data = config(tmp_path, on=["finding.created", "finding.updated", "finding.reopened"])  # no finding.resolved
    async with HubHarness.running(tmp_path, data, transports, scheduler=False, timeout=20.0) as h:
        await h.send([finding(id="F-2", host="web-2", severity="high"), finding()])
        await h.until(lambda: h.settled(2))
        await h.send([finding(id="F-2", host="web-2", severity="medium"), finding(severity="high")])
        await h.until(lambda: h.settled(3))
        await h.send([finding(severity="high", state="fixed")])
        await h.until(lambda: h.events("processed") == 3 and h.settled(3))
        assert [k for _, k, _ in deliveries(h, "secops")] == ["finding.created", "finding.updated"]
        assert len(fake.issues) == 1
