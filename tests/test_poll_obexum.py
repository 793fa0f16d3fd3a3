"""Polling Obexum's REST API against its strict fake (tests/fakes/obexum.py): findings per engagement over
pages, the STIX export, one finding for a webhook and a poll of the same issue, the 60-per-minute sliding
window kept on our side (on a virtual clock), 429 + Retry-After, a token without the scope, and resuming a
run killed mid-way."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from hub.app import create_app
from hub.cli import main
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import sync_state
from tests.fakes.obexum import WINDOW, new_token, obexum
from tests.support import LoopbackServer, events_settled, findings_of, history_of, write_config

BASE = "http://obexum.test/api/v1"
SECRET = "obexum-webhook-secret"


class VirtualClock:
    """Time that moves only when someone sleeps on it: a minute of rate limiting passes in a few milliseconds."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, secs: float) -> None:
        self.now += max(0.0, secs)
        await asyncio.sleep(0)


def finding(engagement: str, i: int) -> dict[str, Any]:
    """One finding of an engagement's findings list (the generic Obexum finding, with its own host)."""
    return {"id": f"obx_{engagement}_{i}", "name": f"Check {i} failed", "severity": ["high", "medium", "low"][i % 3],
            "status": "open", "rule_id": f"WIN-DEF-{i:03d}", "host": {"hostname": f"WS-{engagement}-{i % 2}"},
            "description": "Defender setting off.", "cves": [f"CVE-2024-{21400 + i}"], "mitre": ["T1562.001"],
            "remediation": {"commands": ["Set-MpPreference -DisableTamperProtection $false"],
                            "verification": "Get-MpPreference", "risk_of_fix": "low"}}


def fake(clock: VirtualClock, sizes: dict[str, int], scopes: tuple[str, ...] = ("read:findings",)) -> tuple[Any, str]:
    """The fake with one user's engagements of these sizes (plus another user's), and a token of that user."""
    app = obexum(clock)
    token = new_token()
    app.state.s["tokens"][token] = {"user": "u1", "scopes": list(scopes)}
    for name, size in sizes.items():
        app.state.s["engagements"][name] = {"id": name, "name": f"Audit {name}", "owner": "u1",
                                            "findings": [finding(name, i) for i in range(size)]}
    app.state.s["engagements"]["other"] = {"id": "other", "name": "Not mine", "owner": "u2",
                                           "findings": [finding("other", 0)]}
    return app, token


def poll_config(token: str, stix: bool = False, **extra: Any) -> dict[str, Any]:
    return {"url": f"{BASE}/engagements/{{id}}/" + ("report.stix" if stix else "findings"),
            "parents": {"url": f"{BASE}/engagements"}, "auth": {"bearer": token}, "every_secs": 300,
            "page_size": 3, "pagination": "none" if stix else "page",
            "rate_limit": {"requests": 60, "per_secs": 60}, **extra}


async def make_hub(tmp_path: Path, app: Any, clock: VirtualClock, poll: dict[str, Any]) -> AsyncIterator[Hub]:
    poll = {k: v for k, v in poll.items() if v is not None}
    data = {"storage": {"path": str(tmp_path / "hub.db")}, "pipeline": {"safety_net_secs": 0.5},
            "sources": {"obexum": {"adapter": "obexum", "poll": poll,
                                   "verify": {"scheme": "hmac-sha256", "header": "X-Obexum-Signature",
                                              "prefix": "sha256=", "secrets": [SECRET]}}}}
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)), clock=clock,
              transports={"poll:obexum": httpx.ASGITransport(app=app)}, scheduler=False)
    hub.pollers["obexum"].sleep = clock.sleep
    await hub.start()
    try:
        yield hub
    finally:
        await hub.aclose()


def findings(hub: Hub) -> dict[str, tuple[str, str]]:
    """rule + host -> (status, asset identifier), one row per stored finding (a duplicate would collide)."""
    rows = findings_of(hub.store.conn)
    out = {f"{f.rule_id}@{f.asset.identifier}": (f.status, f.asset.identifier) for f in rows}
    assert len(out) == len(rows), "a finding was stored twice"
    return out


def steps(hub: Hub) -> list[str]:
    return [step["event_type"] for _, step in history_of(hub.store.conn)]


def paths(app: Any) -> list[str]:
    return [path.removeprefix("/api/v1/engagements") for _, _, path, _ in app.state.s["log"]]


async def test_every_engagement_is_read_page_by_page_and_each_finding_stored_once(tmp_path):
    clock = VirtualClock()
    app, token = fake(clock, {"A": 7, "B": 5, "C": 2})
    async for hub in make_hub(tmp_path, app, clock, poll_config(token)):
        report = await hub.pollers["obexum"].run()
        assert report.complete and report.error is None
        assert paths(app) == ["", "/A/findings", "/A/findings", "/A/findings", "/B/findings", "/B/findings",
                              "/C/findings"]  # never the other user's engagement
        assert report.pages == 7 and report.stored == 6  # the engagements list is read, not stored
        await events_settled(hub)
        found = findings(hub)
        assert len(found) == 14 and {s for s, _ in found.values()} == {"open"}
        assert found["WIN-DEF-004@WS-A-0"] == ("open", "WS-A-0")
        assert steps(hub) == ["finding.created"] * 14
        again = await hub.pollers["obexum"].run()  # the same pages: stored once, nothing changes
        await events_settled(hub)
        assert again.complete and again.stored == 0 and steps(hub) == ["finding.created"] * 14


def signed(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json",
            "x-obexum-signature": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


@pytest.mark.parametrize("stix", [False, True], ids=["findings", "stix"])
async def test_a_webhook_and_a_poll_of_one_issue_are_one_finding(tmp_path, stix):
    clock = VirtualClock()
    app, token = fake(clock, {"A": 4})
    async for hub in make_hub(tmp_path, app, clock, poll_config(token, stix=stix)):
        issue = app.state.s["engagements"]["A"]["findings"][1]
        body = orjson.dumps({"event": "scan.uploaded", "engagement_id": "A", "findings": [issue]})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub") as c:
            assert (await c.post("/hooks/obexum", content=body, headers=signed(body))).status_code == 202
        await events_settled(hub)
        assert (await hub.pollers["obexum"].run()).complete
        await events_settled(hub)
        assert len(findings(hub)) == 4
        assert steps(hub) == ["finding.created"] * 4  # the webhook's finding was not created again, nor changed
        if stix:
            assert paths(app) == ["", "/A/report.stix"]


@pytest.mark.slow
async def test_the_client_never_sends_the_61st_request_within_60_seconds(tmp_path):
    clock = VirtualClock()
    app, token = fake(clock, {"A": 30, "B": 30, "C": 15})
    async for hub in make_hub(tmp_path, app, clock, poll_config(token, page_size=1)):
        start = clock()
        report = await hub.pollers["obexum"].run()
        assert report.complete
        log = app.state.s["log"]
        assert len(log) == 3 + 75 and {status for *_, status in log} == {200}  # no 429: the window held
        times = [t for t, *_ in log]
        assert all(later - earlier >= WINDOW for earlier, later in zip(times, times[60:], strict=False))
        assert clock() - start >= WINDOW  # it did wait, rather than being lucky
        await events_settled(hub)
        assert len(findings(hub)) == 75


@pytest.mark.slow
async def test_a_429_is_waited_out_for_its_retry_after(tmp_path):
    """Without the client-side window, the fake's limit answers the 61st request 429 + Retry-After: 60."""
    clock = VirtualClock()
    app, token = fake(clock, {"A": 70})
    async for hub in make_hub(tmp_path, app, clock, poll_config(token, page_size=1, rate_limit=None)):
        report = await hub.pollers["obexum"].run()
        assert report.complete
        log = app.state.s["log"]
        limited = [i for i, (*_, status) in enumerate(log) if status == 429]
        assert limited == [60]  # the engagements list and 59 pages used the 60; the 61st is refused
        retry = log[61]
        assert retry[0] - log[60][0] >= 60 and retry[3] == 200  # sent again once Retry-After had passed
        assert retry[2] == log[60][2]
        await events_settled(hub)
        assert len(findings(hub)) == 70


@pytest.mark.slow
async def test_a_long_retry_after_ends_the_run_and_the_next_resumes(tmp_path):
    clock = VirtualClock()
    app, token = fake(clock, {"A": 70})
    poll = poll_config(token, page_size=1, rate_limit=None, max_wait_secs=30)
    async for hub in make_hub(tmp_path, app, clock, poll):
        first = await hub.pollers["obexum"].run()
        assert not first.complete and "HTTP 429, Retry-After 60" in (first.error or "")
        resume = sync_state.get(hub.store.conn, "poll:obexum")["resume"]
        assert (resume["parent"], resume["page"]) == (0, 60)  # the page that was refused
        await clock.sleep(60)
        second = await hub.pollers["obexum"].run()
        assert second.complete and paths(app)[-10:] == ["/A/findings"] * 10
        await events_settled(hub)
        assert len(findings(hub)) == 70


@pytest.mark.slow
def test_a_token_without_the_scope_is_a_clear_error_in_hub_poll(tmp_path):
    app, token = fake(VirtualClock(), {"A": 2}, scopes=("write:scans",))
    with LoopbackServer(app) as vendor:
        poll = poll_config(token)
        poll["url"] = f"{vendor.url}/api/v1/engagements/{{id}}/findings"
        poll["parents"] = {"url": f"{vendor.url}/api/v1/engagements"}
        data = {"storage": {"path": str(tmp_path / "hub.db")},
                "sources": {"obexum": {"adapter": "obexum", "poll": poll}}}
        result = CliRunner().invoke(main, ["poll", "--config", str(write_config(tmp_path / "hub.yaml", data)),
                                           "--source", "obexum"])
    assert result.exit_code == 1, result.output
    assert "stopped: HTTP 403 (the credentials lack a permission or scope this endpoint needs) " \
           "on GET /api/v1/engagements" in result.output
    assert "insufficient_scope" in result.output and "read:findings" in result.output
    assert token not in result.output and token[5:] not in result.output


async def test_a_run_killed_mid_way_resumes_after_the_last_stored_page(tmp_path):
    clock = VirtualClock()
    app, token = fake(clock, {"A": 7, "B": 5, "C": 2})
    reached, never = asyncio.Event(), asyncio.Event()

    async def hold(request: Any) -> None:  # the process dies while B's second page is on the wire
        if request.url.path.endswith("/B/findings") and request.query_params.get("page") == "2":
            reached.set()
            await never.wait()

    app.state.s["before"] = hold
    async for hub in make_hub(tmp_path, app, clock, poll_config(token)):
        run = asyncio.create_task(hub.pollers["obexum"].run())
        await asyncio.wait_for(reached.wait(), 5)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await events_settled(hub)
        assert len(findings(hub)) == 10  # A's 7 and the 3 of B's first page
    app.state.s["before"], app.state.s["log"] = None, []
    async for hub in make_hub(tmp_path, app, clock, poll_config(token)):  # a new process on the same store
        report = await hub.pollers["obexum"].run()
        assert report.complete
        assert paths(app) == ["/B/findings", "/C/findings"]  # neither the list nor a stored page again
        await events_settled(hub)
        assert len(findings(hub)) == 14 and steps(hub) == ["finding.created"] * 14
        assert sync_state.get(hub.store.conn, "poll:obexum").get("resume") is None


async def test_a_full_import_resolves_the_findings_of_an_engagement_gone_from_the_list(tmp_path):
    clock = VirtualClock()
    app, token = fake(clock, {"A": 2, "B": 2})
    async for hub in make_hub(tmp_path, app, clock, poll_config(token, full_import=True)):
        await hub.pollers["obexum"].run()
        await events_settled(hub)
        del app.state.s["engagements"]["B"]
        await clock.sleep(1)
        assert (await hub.pollers["obexum"].run()).complete
        await events_settled(hub)
        statuses = {key: status for key, (status, _) in findings(hub).items()}
        assert statuses == {"WIN-DEF-000@WS-A-0": "open", "WIN-DEF-001@WS-A-1": "open",
                            "WIN-DEF-000@WS-B-0": "resolved", "WIN-DEF-001@WS-B-1": "resolved"}


def test_parents_and_the_id_placeholder_go_together(tmp_path):
    from hub.errors import ConfigError

    bad = {"sources": {
        "a": {"adapter": "obexum", "poll": {"url": f"{BASE}/engagements/x/findings", "every_secs": 60,
                                            "parents": {"url": f"{BASE}/engagements"}}},
        "b": {"adapter": "obexum", "poll": {"url": f"{BASE}/engagements/{{id}}/findings", "every_secs": 60}},
        "c": {"adapter": "obexum", "poll": {"url": f"{BASE}/e/{{id}}", "every_secs": 60, "rate_limit": {"requests": 0},
                                            "parents": {"url": f"{BASE}/e"}}}}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "bad.yaml", bad))
    text = "\n".join(map(str, info.value.problems))
    assert "sources.a.poll.url: with parents, url must contain {id}" in text
    assert "sources.b.poll.parents: url contains {id}" in text
    assert "sources.c.poll.rate_limit.requests: Input should be greater than or equal to 1" in text
