"""Poll jobs against local fakes of the platforms' list APIs: pagination, rate limits, a 429, a 500
mid-run and resuming, the since watermark, full re-imports across pulls, SecuProbe's scan flow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.runtime import Hub
from hub.settings import load_config
from hub.store import sync_state
from tests.fakes import platforms
from tests.support import events_settled, findings_of, history_of, write_config

se_item = platforms.se_finding


async def make_hub(tmp_path: Path, poll: dict[str, Any], app: Any, adapter: str = "secureendpoint"
                   ) -> AsyncIterator[Hub]:
    data = {"storage": {"path": str(tmp_path / "hub.db")}, "pipeline": {"safety_net_secs": 0.5},
            "sources": {"platform": {"adapter": adapter, "poll": {"every_secs": 300, **poll}}}}
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)),
              transports={"poll:platform": httpx.ASGITransport(app=app)}, scheduler=False)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.aclose()


def statuses(hub: Hub) -> dict[str, str]:
    return {f.tool_id: f.status for f in findings_of(hub.store.conn)}


def history(hub: Hub) -> list[tuple[str, str]]:
    return [(tool_id, step["event_type"]) for tool_id, step in history_of(hub.store.conn)]


SE_POLL = {"url": "http://se.test/v1/findings", "auth": {"bearer": "se_live_test"}, "page_size": 10}


async def test_pages_through_the_list_and_stores_each_page(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(i) for i in range(25)]
    async for hub in make_hub(tmp_path, SE_POLL, app):
        report = await hub.pollers["platform"].run()
        assert report.complete and report.pages == 3 and report.stored == 3
        assert [r["page"] for r in app.state.s["requests"]] == ["1", "2", "3"]
        assert all(r["per_page"] == "10" for r in app.state.s["requests"])
        await events_settled(hub)
        assert len(statuses(hub)) == 25 and set(statuses(hub).values()) == {"open"}
        [found] = findings_of(hub.store.conn, "fnd_0003")
        assert "OpenSSL 1.0.3" in found.title and found.source == "platform"
        again = await hub.pollers["platform"].run()  # the same pages: stored once, nothing changes
        assert again.complete and again.stored == 0


async def test_429_is_waited_out_and_a_500_stops_the_run_which_resumes(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(i) for i in range(30)]
    app.state.s["script"] = [(429, {"Retry-After": "0"})]
    async for hub in make_hub(tmp_path, {**SE_POLL, "max_wait_secs": 5}, app):
        first = await hub.pollers["platform"].run()
        assert first.complete and first.pages == 3  # the 429 was retried within the run
        assert len(app.state.s["requests"]) == 4
        app.state.s["findings"].append(se_item(99))
        app.state.s["requests"].clear()
        app.state.s["script"] = [None, 500]  # page 1 fine, page 2 fails
        broken = await hub.pollers["platform"].run()
        assert not broken.complete and "HTTP 500" in (broken.error or "") and broken.pages == 1
        state = sync_state.get(hub.store.conn, "poll:platform")
        assert state["last_error"].startswith("HTTP 500") and state["resume"]["page"] == 2
        app.state.s["requests"].clear()
        resumed = await hub.pollers["platform"].run()
        assert resumed.complete and sync_state.get(hub.store.conn, "poll:platform").get("resume") is None
        assert [r["page"] for r in app.state.s["requests"]] == ["2", "3", "4"]  # resumed where it stopped
        await events_settled(hub)
        assert "fnd_0099" in statuses(hub)


async def test_a_long_retry_after_ends_the_run_cleanly(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(1)]
    app.state.s["script"] = [(429, {"Retry-After": "3600"})]
    async for hub in make_hub(tmp_path, SE_POLL, app):
        report = await hub.pollers["platform"].run()
        assert not report.complete and "Retry-After 3600" in (report.error or "")
        assert (await hub.pollers["platform"].run()).complete


async def test_rate_limit_remaining_zero_waits_for_the_reset(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(i) for i in range(15)]
    app.state.s["remaining"] = 1  # the first answer says 0 left
    async for hub in make_hub(tmp_path, {**SE_POLL, "max_wait_secs": 0.5}, app):
        report = await hub.pollers["platform"].run()  # reset is 60 s away: longer than max_wait, so stop
        assert not report.complete and "rate limit used up" in (report.error or "")
        assert report.pages == 0 and len(app.state.s["requests"]) == 1


async def test_since_watermark_makes_runs_incremental(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(1, updated_at="2026-01-01T00:00:00Z")]
    async for hub in make_hub(tmp_path, {**SE_POLL, "since_param": "updated_since"}, app):
        await hub.pollers["platform"].run()
        assert "updated_since" not in app.state.s["requests"][0]
        since = sync_state.get(hub.store.conn, "poll:platform")["since"]
        await hub.pollers["platform"].run()
        assert app.state.s["requests"][-1]["updated_since"] == since


async def test_never_two_runs_at_once(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(i) for i in range(5)]
    async for hub in make_hub(tmp_path, SE_POLL, app):
        a, b = await asyncio.gather(hub.pollers["platform"].run(), hub.pollers["platform"].run())
        assert sorted([a.complete, b.complete]) == [False, True]
        assert "already in progress" in (a.error or b.error or "")


async def test_full_reimport_lifecycle_across_pulls(tmp_path):
    """new -> unchanged -> resolved (absent) -> reopened (back), only where full_import is set."""
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(1), se_item(2), se_item(3)]
    async for hub in make_hub(tmp_path, {**SE_POLL, "full_import": True}, app):
        await hub.pollers["platform"].run()
        await events_settled(hub)
        assert statuses(hub) == {"fnd_0001": "open", "fnd_0002": "open", "fnd_0003": "open"}
        app.state.s["findings"] = [se_item(1), se_item(2, severity="high", cvss_score=7.5)]  # 3 is gone, 2 changed
        await hub.pollers["platform"].run()
        await events_settled(hub)
        assert statuses(hub) == {"fnd_0001": "open", "fnd_0002": "open", "fnd_0003": "resolved"}
        app.state.s["findings"] = [se_item(1), se_item(2, severity="high", cvss_score=7.5), se_item(3)]
        await hub.pollers["platform"].run()
        await events_settled(hub)
        assert statuses(hub)["fnd_0003"] == "open"
        steps = history(hub)
        assert steps.count(("fnd_0001", "finding.created")) == 1 and ("fnd_0001", "finding.updated") not in steps
        assert ("fnd_0002", "finding.updated") in steps
        assert [s for t, s in steps if t == "fnd_0003"] == ["finding.created", "finding.resolved", "finding.reopened"]


async def test_without_full_import_absent_findings_stay_open(tmp_path):
    app = platforms.secureendpoint()
    app.state.s["findings"] = [se_item(1), se_item(2)]
    async for hub in make_hub(tmp_path, SE_POLL, app):
        await hub.pollers["platform"].run()
        app.state.s["findings"] = [se_item(1)]
        await hub.pollers["platform"].run()
        await events_settled(hub)
        assert statuses(hub) == {"fnd_0001": "open", "fnd_0002": "open"}


async def test_neuro_envelope_with_limit_pagination(tmp_path):
    app = platforms.neuro()
    app.state.s["findings"] = [{"id": f"find_{i}", "title": f"SQL Injection {i}", "severity": "High",
                                "project_id": "proj_123"} for i in range(120)]
    poll = {"url": "http://neuro.test/api/v1/findings", "auth": {"bearer": "neuro-token"}, "size_param": "limit",
            "page_size": 100}
    async for hub in make_hub(tmp_path, poll, app, adapter="neuro"):
        report = await hub.pollers["platform"].run()
        assert report.complete and [r["page"] for r in app.state.s["requests"]] == ["1", "2"]
        await events_settled(hub)
        assert len(statuses(hub)) == 120


async def test_wrong_credentials_stop_with_the_status(tmp_path):
    app = platforms.secureendpoint(token="another")
    async for hub in make_hub(tmp_path, SE_POLL, app):
        report = await hub.pollers["platform"].run()
        assert not report.complete and report.error.startswith("HTTP 401") and "se_live_test" not in report.error


SP_VULNS = [{"id": "v1", "title": "Missing Content-Security-Policy", "severity": "high", "category": "Security Headers",
             "description": "No CSP header found...", "remediationGuide": "1. Add a Content-Security-Policy header..."},
            {"id": "v2", "title": "Missing HSTS", "severity": "medium", "category": "Security Headers",
             "description": "No HSTS", "remediationGuide": "Add Strict-Transport-Security"}]


async def test_secuprobe_waits_for_completed_scans_and_a_rescan_replaces_the_last(tmp_path):
    app = platforms.secuprobe()
    s = app.state.s
    s["scans"]["s1"] = {"scanId": "s1", "url": "https://your-domain.com", "status": "completed",
                        "completedAt": "2026-03-10T12:00:00Z"}
    s["vulns"]["s1"] = SP_VULNS
    s["scans"]["s2"] = {"scanId": "s2", "url": "https://other.example", "status": "running"}
    poll = {"url": "http://sp.test/api/v1/scans", "auth": {"bearer": "sp_live_test"}, "mode": "secuprobe"}
    async for hub in make_hub(tmp_path, poll, app, adapter="secuprobe"):
        await hub.pollers["platform"].run()
        await events_settled(hub)
        assert len(statuses(hub)) == 2
        assert "/api/v1/scans/s2/vulnerabilities" not in s["requests"]  # not completed yet
        s["scans"]["s2"]["status"] = "completed"
        s["vulns"]["s2"] = SP_VULNS[:1]
        s["scans"]["s3"] = {"scanId": "s3", "url": "https://your-domain.com", "status": "completed"}
        s["vulns"]["s3"] = SP_VULNS[:1]  # HSTS fixed on your-domain.com
        s["requests"].clear()
        await hub.pollers["platform"].run()
        await events_settled(hub)
        assert "/api/v1/scans/s1/vulnerabilities" not in s["requests"]  # imported once
        rows = [(f.title, f.location, f.status) for f in findings_of(hub.store.conn)]
        assert ("Missing HSTS", "https://your-domain.com", "resolved") in rows
        assert sum(1 for _, _, st in rows if st == "open") == 2  # CSP on both sites


def test_poll_config_problems(tmp_path):
    from hub.errors import ConfigError

    bad = {"sources": {"a": {"adapter": "secureendpoint", "poll": {"url": "ftp://x", "every_secs": 5, "cron": "x"}},
                       "b": {"adapter": "neuro"},
                       "c": {"poll": {"url": "https://x", "cron": "61 * * * *"}}}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "bad.yaml", bad))
    text = "\n".join(map(str, info.value.problems))
    assert "sources.a.poll.url: String should match pattern" in text
    assert "sources.a.poll.every_secs: Input should be greater than or equal to 10" in text
    assert "sources.b: a source needs verify (webhooks), poll (API pulls) or both" in text


def test_poll_config_cross_checks(tmp_path):
    from hub.errors import ConfigError

    bad = {"sources": {"a": {"adapter": "secureendpoint", "poll": {"url": "https://x", "every_secs": 60,
                                                                    "cron": "* * * * *"}},
                       "c": {"poll": {"url": "https://x", "cron": "61 * * * *"}}}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "bad.yaml", bad))
    text = "\n".join(map(str, info.value.problems))
    assert "sources.a.poll: set either every_secs or cron" in text
    assert "sources.c.poll.cron: invalid cron expression" in text
    assert "sources.c.poll.adapter: polled pages need an adapter" in text

