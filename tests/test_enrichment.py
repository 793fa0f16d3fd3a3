"""Enrichment against fakes of SecureEndpoint's and NEURO's APIs (tests/fakes/platforms.py, from their published
documents): a webhook that carries only ids becomes the finding a poll of the API gives; 429 and 5xx are retried;
while the API is down the event waits, visibly, holding its source's later events and not the other sources';
after wait_max_secs it is processed with what the webhook had, marked not enriched; the cache spares a second GET;
the rate-limit headers pace the reads; the credentials appear nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from hub import signatures
from hub.cli import main
from hub.errors import ConfigError
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import events as event_rows
from tests.fakes import platforms
from tests.support import HubHarness, JumpClock, events_of, findings_of, history_of, served_in_process, write_config

se_item = partial(platforms.se_finding, affected_assets=1)  # on one asset: its host becomes the finding's

SE_SECRET, NEURO_HOOK_TOKEN = "se-webhook-secret", "neuro-hook-token"
SE_KEY, NEURO_KEY = "se_live_enrich_key_42", "neuro-api-key-42"
SE_SIGNER = signatures.build("hmac-sha256", [SE_SECRET], header="X-SE-Signature")
NEURO_SIGNER = signatures.build("token", [NEURO_HOOK_TOKEN], header="Authorization")
SE_ENRICH = {"url": "http://se.test/v1", "auth": {"bearer": SE_KEY}, "retry_secs": 5, "wait_max_secs": 600,
             "max_inline_wait_secs": 1}
NEURO_ENRICH = {"url": "http://neuro.test/api/v1", "auth": {"bearer": NEURO_KEY}}
COMPARED = ("scanner", "tool_id", "title", "severity", "cvss_score", "cve", "cwe", "location", "description",
            "remediation", "references", "status")






def se_asset(i: int) -> dict[str, Any]:
    return {"id": f"ast_{i:04d}", "hostname": f"db-{i}.internal", "ip": f"10.0.{i // 250}.{i % 250}",
            "os": "Windows Server 2012 R2", "os_eol": True, "risk_score": 94}


def se_hook(i: int, event: str = "finding.created", severity: str = "critical") -> dict[str, Any]:
    """A SecureEndpoint webhook as the seed document shows it: the id, severity and score only."""
    return {"event": event, "timestamp": "2026-03-10T09:14:22Z",
            "data": {"finding_id": f"fnd_{i:04d}", "severity": severity, "cvss": 9.8}}


def neuro_item(ident: str, **kw: Any) -> dict[str, Any]:
    return {"id": ident, "project_id": "proj_123", "title": "SQL Injection in Login", "severity": "High",
            "status": "Confirmed", "description": "SQL injection in the login form.", "cvss_score": 8.6,
            "remediation": "Use parameterized queries.", "cwe": ["CWE-89"], "affected_asset": "app.example.com",
            "references": ["https://owasp.org/www-community/attacks/SQL_Injection"], **kw}


def neuro_hook(ident: str) -> dict[str, Any]:
    """NEURO's documented webhook: id, title and project only."""
    return {"event": "finding.created", "timestamp": "2024-01-15T10:30:00Z",
            "data": {"id": ident, "title": "SQL Injection in Login", "project_id": "proj_123"}}


def sources(se: dict[str, Any] | None = None, neuro: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"se": {"verify": {"scheme": "hmac-sha256", "header": "X-SE-Signature", "secrets": [SE_SECRET]},
                   "adapter": "secureendpoint", "enrich": {**SE_ENRICH, **(se or {})}},
            "neuro": {"verify": {"scheme": "token", "header": "Authorization", "secrets": [NEURO_HOOK_TOKEN]},
                      "adapter": "neuro", "enrich": {**NEURO_ENRICH, **(neuro or {})}}}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, data_sources: dict[str, Any]
                  ) -> AsyncIterator[tuple[HubHarness, Any, Any, JumpClock, Path]]:
    se_api, neuro_api, clock = platforms.secureendpoint(SE_KEY), platforms.neuro(NEURO_KEY), JumpClock()
    transports = {"enrich:se": httpx.ASGITransport(app=se_api), "enrich:neuro": httpx.ASGITransport(app=neuro_api)}
    path = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")},
                                                "sources": data_sources, "pipeline": {"safety_net_secs": 0.2}})
    async with served_in_process(path, clock=clock, transports=transports, scheduler=True) as (hub, client):
        yield HubHarness(hub, client, signer=SE_SIGNER), se_api, neuro_api, clock, path


async def post(h: HubHarness, source: str, body: Any) -> None:
    raw = orjson.dumps(body)
    h.n += 1
    signer = SE_SIGNER if source == "se" else NEURO_SIGNER
    r = await h.client.post(f"/hooks/{source}", content=raw, headers={
        "content-type": "application/json", "x-request-id": f"r{h.n}", **signer.sign(raw, time.time(), f"m{h.n}")})
    assert r.status_code == 202, r.text


def events(h: HubHarness, state: str) -> list[dict[str, Any]]:
    return events_of(h.hub.store.conn, state=state)


def finding(h: HubHarness, tool_id: str) -> Any:
    [found] = findings_of(h.hub.store.conn, tool_id)
    return found


def fields(found: Any) -> dict[str, Any]:
    return {name: getattr(found, name) for name in COMPARED}


async def polled(tmp_path: Path, adapter: str, app: Any, url: str, token: str, **poll: Any) -> dict[str, Any]:
    """What a poll of the same API makes of the same inventory: every finding's compared fields, by tool id."""
    folder = tmp_path / f"poll-{adapter}"
    folder.mkdir()
    data = {"storage": {"path": str(folder / "hub.db")},
            "sources": {"polled": {"adapter": adapter, "poll": {"url": url, "auth": {"bearer": token},
                                                             "every_secs": 300, **poll}}}}
    hub = Hub(load_config(write_config(folder / "hub.yaml", data)),
              transports={"poll:polled": httpx.ASGITransport(app=app)}, scheduler=False)
    await hub.start()
    try:
        assert (await hub.pollers["polled"].run()).complete
        await hub.pipeline.process_pending()
        return {f.tool_id: fields(f) for f in findings_of(hub.store.conn)}
    finally:
        await hub.aclose()


async def test_a_secureendpoint_webhook_becomes_the_finding_the_poll_gives_with_its_asset(tmp_path):
    async with running(tmp_path, sources()) as (h, se_api, _, _, _):
        se_api.state.s["findings"] = [se_item(1), se_item(2, affected_assets=150)]
        se_api.state.s["assets"] = {"fnd_0001": [se_asset(1)], "fnd_0002": [se_asset(i) for i in range(150)]}
        await post(h, "se", se_hook(1))
        await post(h, "se", se_hook(2))
        await h.until(lambda: len(events(h, "processed")) == 2)
        one, two = finding(h, "fnd_0001"), finding(h, "fnd_0002")
        assert one.title == "End-of-life software: OpenSSL 1.0.1" and one.cve == ["CVE-2024-21001"]
        assert one.asset.hostname == "db-1.internal" and one.asset.os == "Windows Server 2012 R2"
        assert one.raw["enrichment"]["enriched"] is True
        assert len(two.raw["assets"]) == 150  # two pages of assets, joined
        assert "/v1/findings/fnd_0002/assets" in se_api.state.s["paths"]
        assert se_api.state.s["auth"] and set(se_api.state.s["auth"]) == {f"Bearer {SE_KEY}"}
        by_poll = await polled(tmp_path, "secureendpoint", se_api, "http://se.test/v1/findings", SE_KEY)
        assert fields(one) == by_poll["fnd_0001"] and fields(two) == by_poll["fnd_0002"]
        assert not two.asset.hostname  # several hosts: the finding's asset stays as the poll gives it


async def test_a_neuro_webhook_without_details_is_read_from_the_api_and_a_complete_one_is_not(tmp_path):
    async with running(tmp_path, sources()) as (h, _, neuro_api, _, _):
        neuro_api.state.s["findings"] = [neuro_item("find_789"), neuro_item("find_790", title="XSS in Search")]
        await post(h, "neuro", neuro_hook("find_789"))
        complete = {"event": "finding.updated", "data": neuro_item("find_790", title="XSS in Search")}
        await post(h, "neuro", complete)
        await h.until(lambda: len(events(h, "processed")) == 2)
        assert neuro_api.state.s["paths"] == ["/api/v1/findings/find_789"]  # the complete webhook needed no GET
        found = finding(h, "find_789")
        assert found.description == "SQL injection in the login form." and found.severity == "high"
        assert found.raw["enrichment"]["enriched"] is True
        by_poll = await polled(tmp_path, "neuro", neuro_api, "http://neuro.test/api/v1/findings", NEURO_KEY,
                               size_param="limit")
        assert fields(found) == by_poll["find_789"]


async def test_a_429_is_waited_out_in_place_and_a_500_is_retried_after_the_event_waited(tmp_path):
    async with running(tmp_path, sources()) as (h, se_api, _, clock, _):
        se_api.state.s["findings"] = [se_item(1), se_item(2)]
        se_api.state.s["script"] = [(429, {"Retry-After": "0"})]
        await post(h, "se", se_hook(1))
        await h.until(lambda: len(events(h, "processed")) == 1)
        assert se_api.state.s["paths"][:2] == ["/v1/findings/fnd_0001", "/v1/findings/fnd_0001"]
        assert finding(h, "fnd_0001").raw["enrichment"]["enriched"] is True
        se_api.state.s["script"] = [500]
        await post(h, "se", se_hook(2))
        await h.until(lambda: len(events(h, "waiting")) == 1)
        [waiting] = events(h, "waiting")
        assert "HTTP 500 on GET /findings/fnd_0002" in waiting["error"] and waiting["wait_until"]
        clock.jump(6)  # past retry_secs
        h.hub.pipeline.wake()
        await h.until(lambda: len(events(h, "processed")) == 2)
        assert finding(h, "fnd_0002").raw["enrichment"]["enriched"] is True


@pytest.mark.slow
async def test_while_the_platform_is_down_events_wait_in_order_visibly_and_other_sources_flow(tmp_path):
    async with running(tmp_path, sources()) as (h, se_api, neuro_api, clock, path):
        se_api.state.s["findings"] = [se_item(1, status="open")]
        neuro_api.state.s["findings"] = [neuro_item("find_1")]
        se_api.state.s["down"] = True
        await post(h, "se", se_hook(1))
        await h.until(lambda: len(events(h, "waiting")) == 1)
        await post(h, "se", se_hook(1, event="finding.resolved"))  # must not be applied before the created
        await post(h, "neuro", neuro_hook("find_1"))
        await h.until(lambda: len(events(h, "processed")) == 1)
        assert finding(h, "find_1").raw["enrichment"]["enriched"] is True  # the other source went on
        asked = len(se_api.state.s["paths"])
        for _ in range(20):  # wake-ups meanwhile (the safety net's): the waiting event is not tried before its time
            h.hub.pipeline.wake()
            await asyncio.sleep(0.02)
        assert len(se_api.state.s["paths"]) == asked
        assert [e["state"] for e in events_of(h.hub.store.conn, source="se")] == ["waiting", "pending"]
        assert not findings_of(h.hub.store.conn, "fnd_0001")

        listed = CliRunner().invoke(main, ["events", "list", "--config", str(path), "--state", "waiting"])
        assert listed.exit_code == 0 and "evt_1" in listed.output and "HTTP 503" in listed.output
        shown = CliRunner().invoke(main, ["events", "show", "evt_1", "--config", str(path)])
        assert '"state": "waiting"' in shown.output and "waiting for enrichment until" in shown.output
        api_rows = event_rows.listing(h.hub.store.conn, state="waiting")
        assert [r["id"] for r in api_rows] == ["evt_1"]

        se_api.state.s["down"] = False
        clock.jump(6)
        h.hub.pipeline.wake()
        await h.until(lambda: not events(h, "pending") and not events(h, "waiting"))
        steps = [step["event_type"] for tool_id, step in history_of(h.hub.store.conn) if tool_id == "fnd_0001"]
        assert steps == ["finding.created", "finding.resolved"]
        assert finding(h, "fnd_0001").title == "End-of-life software: OpenSSL 1.0.1"


async def test_after_wait_max_secs_the_event_is_processed_unenriched_and_says_so(tmp_path):
    async with running(tmp_path, sources()) as (h, se_api, _, clock, path):
        se_api.state.s["down"] = True
        await post(h, "se", se_hook(7))
        await h.until(lambda: len(events(h, "waiting")) == 1)
        clock.jump(300)
        h.hub.pipeline.wake()
        await h.until(lambda: events(h, "waiting") and "until" in events(h, "waiting")[0]["error"]
                      and len(se_api.state.s["paths"]) >= 2)
        assert not findings_of(h.hub.store.conn, "fnd_0007")  # still within wait_max_secs: waiting again
        clock.jump(601)
        h.hub.pipeline.wake()
        await h.until(lambda: len(events(h, "processed")) == 1)
        found = finding(h, "fnd_0007")
        assert found.severity == "critical" and found.cvss_score == 9.8  # what the webhook had
        assert found.raw["enrichment"]["enriched"] is False
        assert "wait_max_secs" in found.raw["enrichment"]["reason"] and "503" in found.raw["enrichment"]["reason"]
        shown = CliRunner().invoke(main, ["findings", "show", found.id, "--config", str(path)]).output
        assert '"enriched":false' in shown


async def test_a_cached_record_spares_the_second_get(tmp_path):
    async with running(tmp_path, sources(se={"cache_secs": 60})) as (h, se_api, _, clock, _):
        se_api.state.s["findings"] = [se_item(1)]
        await post(h, "se", se_hook(1))
        await post(h, "se", se_hook(1, event="finding.severity_changed", severity="high"))
        await h.until(lambda: len(events(h, "processed")) == 2)
        assert se_api.state.s["paths"].count("/v1/findings/fnd_0001") == 1
        clock.jump(61)  # the record is stale: read again
        await post(h, "se", se_hook(1, event="finding.severity_changed", severity="medium"))
        await h.until(lambda: len(events(h, "processed")) == 3)
        assert se_api.state.s["paths"].count("/v1/findings/fnd_0001") == 2


async def test_a_used_up_rate_limit_makes_the_next_event_wait_without_a_request(tmp_path):
    async with running(tmp_path, sources()) as (h, se_api, _, _, _):
        se_api.state.s["findings"] = [se_item(1), se_item(2)]
        se_api.state.s["remaining"] = 2  # the second answer says 0 remain until the reset, a minute away
        await post(h, "se", se_hook(1))
        await h.until(lambda: len(events(h, "processed")) == 1)
        asked = len(se_api.state.s["paths"])
        await post(h, "se", se_hook(2))
        await h.until(lambda: len(events(h, "waiting")) == 1)
        assert len(se_api.state.s["paths"]) == asked
        assert "X-RateLimit-Reset" in events(h, "waiting")[0]["error"]


async def test_a_finding_the_platform_does_not_know_is_processed_unenriched_at_once(tmp_path):
    async with running(tmp_path, sources()) as (h, _, _, _, _):
        await post(h, "se", se_hook(9))
        await h.until(lambda: len(events(h, "processed")) == 1)
        note = finding(h, "fnd_0009").raw["enrichment"]
        assert note["enriched"] is False and "HTTP 404" in note["reason"]


async def test_the_credentials_appear_in_no_log_line_error_or_repr(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path, sources(se={"auth": {"bearer": "wrong-key-that-must-stay-secret"}})) as (h, se_api,
                                                                                                          _, _, path):
        await post(h, "se", se_hook(1))
        await h.until(lambda: len(events(h, "waiting")) == 1)
        assert "401" in events(h, "waiting")[0]["error"]
        assert se_api.state.s["auth"] == ["Bearer wrong-key-that-must-stay-secret"]  # it was sent ...
        shown = CliRunner().invoke(main, ["events", "show", "evt_1", "--config", str(path)]).output
        config = load_config(path)
        for text in (caplog.text, shown, repr(config.sources["se"]), str(events(h, "waiting"))):
            assert "wrong-key-that-must-stay-secret" not in text  # ... and shown nowhere
            assert NEURO_KEY not in text


@pytest.mark.parametrize(("source", "message"), [
    ({"verify": {"scheme": "hmac-sha256", "header": "X", "secrets": ["s"]}, "adapter": "generic",
      "options": {"findings": "body", "fields": {"title": "item.t"}}, "enrich": NEURO_ENRICH},
     "the generic adapter cannot enrich; adapters that can: neuro, secureendpoint"),
    ({"poll": {"url": "http://se.test/v1/findings", "every_secs": 300, "auth": {"bearer": "k"}},
      "adapter": "secureendpoint", "enrich": SE_ENRICH}, "enrichment completes webhook events"),
])
def test_enrich_is_refused_where_it_cannot_work_with_file_and_line(tmp_path, source, message):
    data = {"storage": {"path": str(tmp_path / "hub.db")}, "sources": {"x": source}}
    path = write_config(tmp_path / "hub.yaml", data)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = [p for p in caught.value.problems if "enrich" in str(p)]
    assert message in str(problem) and str(problem).startswith(f"{path}:") and "sources.x.enrich" in str(problem)


@pytest.mark.slow
async def test_an_api_that_hangs_makes_the_event_wait_and_one_that_answers_html_is_processed_unenriched(tmp_path):
    """The vendor hanging past timeout_secs (the client's ReadTimeout) is a passing failure: the event waits, nothing
    is lost. A 200 whose body is not JSON (a login page, a proxy's error) will not get better: processed at once."""
    answers: list[str] = ["hang"]

    def api(request: httpx.Request) -> httpx.Response:
        if (answers.pop(0) if answers else "html") == "hang":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"})

    clock = JumpClock()
    data = {"storage": {"path": str(tmp_path / "hub.db")}, "sources": {"se": sources()["se"]},
            "pipeline": {"safety_net_secs": 0.2}}
    path = write_config(tmp_path / "hub.yaml", data)
    async with served_in_process(path, clock=clock, transports={"enrich:se": httpx.MockTransport(api)},
                                 scheduler=True) as (hub, client):
        h = HubHarness(hub, client, signer=SE_SIGNER)
        await post(h, "se", se_hook(1))
        await h.until(lambda: len(events(h, "waiting")) == 1)
        assert "ReadTimeout" in events(h, "waiting")[0]["error"] and not findings_of(hub.store.conn)
        clock.jump(6)
        hub.pipeline.wake()
        await h.until(lambda: len(events(h, "processed")) == 1)
        note = finding(h, "fnd_0001").raw["enrichment"]
        assert note["enriched"] is False and "is not JSON" in note["reason"]
