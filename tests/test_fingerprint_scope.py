"""One finding per issue, whatever the path: SecureEndpoint's signed webhook and its polled /v1/findings list
give one finding and one Linear ticket, whether both are one source or two sources sharing a fingerprint scope;
a full re-import of one source of the scope leaves open what another source of it still reports; two sources
without a scope stay two findings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import signatures
from hub.errors import ConfigError
from hub.settings import load_config
from tests.fakes import platforms
from tests.fakes.linear import API_KEY, TEAM, FakeLinear
from tests.support import HubHarness, JumpClock, deliveries_of, findings_of, history_of, served_in_process, write_config

se_item = platforms.se_finding

SECRET = "se-webhook-secret"
LIFECYCLE = ["finding.created", "finding.updated", "finding.resolved", "finding.reopened"]
VERIFY = {"scheme": "hmac-sha256", "header": "X-SE-Signature", "secrets": [SECRET]}
POLL = {"url": "http://se.test/v1/findings", "auth": {"bearer": "se_live_test"}, "every_secs": 300, "page_size": 10}






def se_webhook(i: int) -> dict[str, Any]:
    """finding.created as the seed document shows it: the id, severity and score only."""
    return {"event": "finding.created", "timestamp": "2026-03-10T09:14:22Z",
            "data": {"finding_id": f"fnd_{i:04d}", "severity": "critical", "cvss": 9.8}}


def config(tmp_path: Path, sources: dict[str, Any]) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": sources,
        "routes": [{"name": "tickets", "on": LIFECYCLE, "to": ["secops"]}],
        "targets": {"secops": {"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM,
                               "url": "http://linear.test", "rate_limit": {"per_sec": 1000},
                               "retry": {"schedule_secs": [0.05] * 3, "jitter": 0}}},
        "pipeline": {"safety_net_secs": 0.5},
    }


def one_source() -> dict[str, Any]:
    return {"secureendpoint": {"verify": VERIFY, "adapter": "secureendpoint", "poll": {**POLL, "full_import": True}}}


def two_sources(scope: str | None) -> dict[str, Any]:
    def fingerprint() -> dict[str, Any]:
        return {"fingerprint": {"scope": scope}} if scope else {}

    return {"se-hooks": {"verify": VERIFY, "adapter": "secureendpoint", **fingerprint()},
            "se-api": {"poll": {**POLL, "full_import": True}, "adapter": "secureendpoint", **fingerprint()}}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, sources: dict[str, Any]
                  ) -> AsyncIterator[tuple[HubHarness, Any, FakeLinear, JumpClock]]:
    """The hub with both paths: SecureEndpoint's list API faked at se.test for whichever source polls, Linear
    for the tickets; a harness that signs the way SecureEndpoint does."""
    api, linear, clock = platforms.secureendpoint(), FakeLinear(), JumpClock()
    poller = next(name for name, src in sources.items() if "poll" in src)
    transports = {"secops": httpx.ASGITransport(app=linear.app), f"poll:{poller}": httpx.ASGITransport(app=api)}
    path = write_config(tmp_path / "hub.yaml", config(tmp_path, sources))
    async with served_in_process(path, clock=clock, transports=transports, scheduler=False) as (hub, client):
        signer = signatures.build("hmac-sha256", [SECRET], header="X-SE-Signature")
        yield HubHarness(hub, client, signer=signer, timeout=20.0), api, linear, clock


async def poll(h: HubHarness, clock: JumpClock) -> None:
    clock.jump(60)
    [poller] = h.hub.pollers.values()
    report = await poller.run()
    assert report.complete and report.error is None
    await h.until(lambda: h.events("pending") == 0)


def findings(h: HubHarness) -> list[tuple[str, str, str]]:
    return sorted((f.tool_id, f.source, f.status) for f in findings_of(h.hub.store.conn))


def pollers(sources: dict[str, Any]) -> list[str]:
    return [name for name, src in sources.items() if "poll" in src]


@pytest.mark.slow
@pytest.mark.parametrize("sources", [one_source(), two_sources("secureendpoint")], ids=["one-source", "shared-scope"])
async def test_the_same_issue_by_webhook_and_by_poll_is_one_finding_and_one_ticket(tmp_path, sources):
    hook = next(name for name, src in sources.items() if "verify" in src)
    async with running(tmp_path, sources) as (h, api, linear, clock):
        await h.post(hook, se_webhook(1))
        await h.until(lambda: h.settled(1))
        api.state.s["findings"] = [se_item(1), se_item(2)]
        await poll(h, clock)
        await h.until(lambda: h.settled())
        assert findings(h) == [("fnd_0001", hook, "open"), ("fnd_0002", pollers(sources)[0], "open")]
        tool_ids = {f.id: f.tool_id for f in findings_of(h.hub.store.conn)}
        created = sorted(tool_ids[d["finding_id"]] for d in deliveries_of(h.hub.store.conn)
                         if d["kind"] == "finding.created")
        assert created == ["fnd_0001", "fnd_0002"]
        assert len(linear.issues) == 2 and len({issue["title"] for issue in linear.issues.values()}) == 2


@pytest.mark.slow
async def test_two_sources_without_a_scope_stay_two_findings(tmp_path):
    async with running(tmp_path, two_sources(None)) as (h, api, linear, clock):
        await h.post("se-hooks", se_webhook(1))
        await h.until(lambda: h.settled(1))
        api.state.s["findings"] = [se_item(1)]
        await poll(h, clock)
        await h.until(lambda: h.settled(2))
        assert findings(h) == [("fnd_0001", "se-api", "open"), ("fnd_0001", "se-hooks", "open")]
        assert len(linear.issues) == 2


@pytest.mark.slow
async def test_a_full_reimport_leaves_open_what_another_source_of_the_scope_reports(tmp_path):
    """se-api created both findings; the webhook source also reports fnd_0001. Both vanish from the list: the one
    only the API knew resolves, the one the webhook still reports stays open (and its ticket too)."""
    async with running(tmp_path, two_sources("secureendpoint")) as (h, api, linear, clock):
        api.state.s["findings"] = [se_item(1), se_item(2)]
        await poll(h, clock)
        await h.until(lambda: h.settled(2))
        await h.post("se-hooks", se_webhook(1))
        await h.until(lambda: h.events("pending") == 0)
        steps = [(tool_id, step["event_type"], step["actor"]) for tool_id, step in history_of(h.hub.store.conn)
                 if tool_id == "fnd_0001"]
        assert steps == [("fnd_0001", "finding.created", "se-api"), ("fnd_0001", "finding.reported", "se-hooks")]
        api.state.s["findings"] = []
        await poll(h, clock)
        await h.until(lambda: h.settled(3))
        assert findings(h) == [("fnd_0001", "se-api", "open"), ("fnd_0002", "se-api", "resolved")]
        assert sorted(linear.view(i)["state"]["type"] for i in linear.issues.values()) == ["backlog", "completed"]


def test_sources_of_one_scope_must_fingerprint_the_same_inputs(tmp_path):
    sources = two_sources("secureendpoint")
    sources["se-api"]["fingerprint"]["use"] = "default"
    with pytest.raises(ConfigError, match=r"se-api.*shares scope 'secureendpoint' with source 'se-hooks'"):
        load_config(write_config(tmp_path / "hub.yaml", config(tmp_path, sources)))


def test_a_scope_named_after_a_source_outside_it_is_refused(tmp_path):
    """That source already fingerprints under its own name: it would join the scope without saying so."""
    sources = {**two_sources("se-other"), "se-other": {"verify": VERIFY, "adapter": "secureendpoint"}}
    with pytest.raises(ConfigError, match="'se-other' is a source outside this scope"):
        load_config(write_config(tmp_path / "hub.yaml", config(tmp_path, sources)))


def test_check_config_notes_a_platform_split_into_a_webhook_source_and_a_poll_source(tmp_path):
    """The trap a new user falls into: said at load (check-config prints it, serve logs it), not an error."""

    def notes(sources: dict[str, Any]) -> list[str]:
        return [p.message for p in load_config(write_config(tmp_path / "hub.yaml", config(tmp_path, sources))).notes]

    [note] = notes(two_sources(None))
    assert note.startswith("secureendpoint is polled here and received by webhook in se-hooks: the same issue")
    assert notes(two_sources("secureendpoint")) == [] and notes(one_source()) == []
