"""The freshservice connector: exact requests, classification, lifecycle against a fake Freshservice that
enforces the real contract, one ticket per finding through lost answers, status read back, end to end."""

from __future__ import annotations

import base64
import re
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from connectors import freshservice as fs_module
from connectors.freshservice import FreshserviceConfig, FreshserviceConnector, FreshserviceError
from hub.cli import main
from hub.connector import Item, Outcome, Ref
from hub.errors import ConfigError
from hub.ids import new_id
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.models import Finding
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store import findings as finding_rows
from hub.store import sync_state
from tests.fakes.freshservice import fake_freshservice
from tests.support import EVERY, HubHarness, base_config, deliveries_of, findings_of, scanner_source, write_config

KEY = "fs-test-key"
URL = "https://acme.freshservice.com"
FID = "fnd_01JTEST0000000000000000001"
MAPPING = load_mapping("freshservice", BUILTIN_ROOT / "freshservice", FreshserviceConnector.payloads)


def connector(**overrides: Any) -> FreshserviceConnector:
    raw = {"type": "freshservice", "url": URL, "auth": {"api_key": KEY}, "requester_email": "vuln-bot@example.com",
           **overrides}
    return FreshserviceConnector("fs", FreshserviceConfig.model_validate(raw), MAPPING)


def finding(**kw: Any) -> dict[str, Any]:
    base = {"id": FID, "source": "scanner", "title": "SQL injection in /login", "severity": "high", "cvss_score": 8.1,
            "cve": ["CVE-2026-1234"], "asset": {"hostname": "web-01", "exposure": "external"},
            "first_seen": "2026-11-22T10:00:00.000Z", "sla_due_at": "2026-11-29T10:00:00.000Z"}
    return Finding.model_validate({**base, **kw}).model_dump(mode="json")


def item(kind: str = "finding.created", ref: Ref | None = None, attempt: int = 1, changes: dict[str, Any] | None = None,
         **kw: Any) -> Item:
    return Item("dlv_1", kind, "fh_key", "all", "fs", finding(**kw), None, changes or {}, ref, attempt)


def creating() -> Ref:
    return Ref(FID, "fs", state="creating")


def linked(ticket: str = "1") -> Ref:
    return Ref(FID, "fs", ticket, f"{URL}/a/tickets/{ticket}", "Open", "linked")


def client(fs: FreshserviceConnector, app: Any) -> httpx.AsyncClient:
    return fs.client(transport=httpx.ASGITransport(app=app))


# --- config ------------------------------------------------------------------------------------------------


def hub_config(tmp_path: Path, target: dict[str, Any]) -> Path:
    data = base_config(tmp_path, routes=[], targets={"fs": {"type": "freshservice", "url": URL,
                                                            "auth": {"api_key": KEY}, **target}})
    return write_config(tmp_path / "hub.yaml", data)


def problems(tmp_path: Path, target: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(hub_config(tmp_path, target))
    return "\n".join(map(str, info.value.problems))


@pytest.mark.slow
def test_config_rules_and_secrets(tmp_path):
    text = problems(tmp_path, {"requester_emial": "a@example.com"})
    assert 'targets.fs.requester_emial: unknown key; did you mean "requester_email"?' in text
    assert "set exactly one of requester_email or requester_id" in problems(tmp_path, {})
    text = problems(tmp_path, {"requester_id": 7, "url": "http://acme.freshservice.com", "source": 16,
                               "correlation_query": "tag:'x'"})
    assert "HTTPS only" in text and "unknown source code 16" in text and "must use {tag} or {finding_id}" in text
    cfg = load_config(hub_config(tmp_path, {"requester_id": 7})).targets["fs"]
    assert KEY not in repr(cfg) and KEY not in str(cfg.public())
    assert cfg.sync.interval_secs == 600 and cfg.resolved_status == 4 and cfg.source == 14
    assert "must use {tag}" in problems(tmp_path, {"requester_id": 7, "correlation_query": "tag:'{tag}' {x}"})
    local = connector(url="http://127.0.0.1:9999")  # a local test double may use http
    assert not list(local.config.problems())


# --- exact requests and classification ---------------------------------------------------------------------


def test_create_request_is_exact_and_escaped():
    fs = connector(group_id=5, custom_fields={"cf_team": "secops"})
    [out] = fs.render(item(title='<img src=x onerror="alert(1)"> & co', description="a <b>bold</b> claim"))
    assert (out.method, out.url) == ("POST", f"{URL}/api/v2/tickets")
    assert out.headers["authorization"] == "Basic " + base64.b64encode(f"{KEY}:X".encode()).decode()
    assert out.masked_headers()["authorization"] == "********" and "authorization" in out.secret_headers
    body = orjson.loads(out.body)
    assert body["subject"] == '[HIGH] <img src=x onerror="alert(1)"> & co on web-01'  # a plain-text field
    assert "<b>bold</b>" not in body["description"] and "<p>a &lt;b&gt;bold&lt;/b&gt; claim</p>" in body["description"]
    assert "CVE-2026-1234" in body["description"] and FID in body["description"]
    assert {k: body[k] for k in ("status", "priority", "urgency", "impact", "source", "type", "email", "group_id")} \
        == {"status": 2, "priority": 3, "urgency": 3, "impact": 3, "source": 14, "type": "Incident",
            "email": "vuln-bot@example.com", "group_id": 5}
    assert body["custom_fields"] == {"cf_team": "secops"}
    marker = "fh-01JTEST0000000000000000001"
    assert body["tags"] == ["security", "findings-hub", marker] and len(marker) <= 32


def test_render_steps_for_linked_and_unlinked_tickets():
    fs = connector(resolved_status=5, resolve_custom_fields={"cf_root_cause": "patched"})
    resolve = fs.render(item("finding.resolved", linked("42"), status="resolved"))
    assert [(o.method, o.url.removeprefix(URL)) for o in resolve] == [
        ("PUT", "/api/v2/tickets/42"), ("POST", "/api/v2/tickets/42/notes")]
    assert orjson.loads(resolve[0].body) == {"status": 5, "custom_fields": {"cf_root_cause": "patched"}}
    assert orjson.loads(resolve[1].body)["private"] is True
    fresh = fs.render(item("finding.updated", None, changes={"severity": {"old": "low", "new": "high"}}))
    assert [o.meta["op"] for o in fresh] == ["create", "note"]  # a new ticket already has the new fields
    upd = fs.render(item("finding.updated", linked(), changes={"cvss_score": {"old": 5.0, "new": 8.1}}))
    assert "priority" not in orjson.loads(upd[0].body)  # severity unchanged: the agent's priority stays
    assert fs.render(item("finding.created", linked())) == []


@pytest.mark.parametrize(("status", "body", "headers", "outcome", "words"), [
    (503, {}, {}, Outcome.RETRY, ["HTTP 503"]),
    (429, {}, {"retry-after": "7"}, Outcome.RETRY, ["per-minute API limit"]),
    (400, {"description": "Validation failed", "errors": [{"field": "priority", "message": "It should be one of "
                                                           "these values: 1,2,3,4", "code": "invalid_value"}]},
     {}, Outcome.PERMANENT, ["priority: It should be one of these values: 1,2,3,4 (invalid_value)"]),
    (401, {"code": "invalid_credentials"}, {}, Outcome.PERMANENT, ["check auth.api_key of target fs"]),
    (403, {"code": "access_denied"}, {}, Outcome.PERMANENT, ["role", "agent"]),
    (404, {"code": "access_denied"}, {}, Outcome.PERMANENT, ["HTTP 404"]),
])
def test_classify(status, body, headers, outcome, words):
    verdict = connector().classify(httpx.Response(status, json=body, headers=headers))
    assert verdict.outcome is outcome and verdict.status == status
    assert all(w in verdict.reason for w in words) and KEY not in verdict.reason
    if status == 429:
        assert verdict.retry_after == 7


# --- lifecycle against the fake ------------------------------------------------------------------------------


async def test_lifecycle_create_update_resolve_reopen_sla():
    app, fs = fake_freshservice(KEY), connector()
    async with client(fs, app) as c:
        made = await fs.deliver(c, item(ref=creating()))
        assert (made.outcome, made.remote_id, made.remote_status) == (Outcome.OK, "1", "Open")
        assert made.remote_url == f"{URL}/a/tickets/1"
        ticket = app.state.tickets[1]
        assert ticket["priority"] == 3 and "fh-01JTEST0000000000000000001" in ticket["tags"]
        upd = await fs.deliver(c, item("finding.updated", linked(), severity="critical",
                                       changes={"severity": {"old": "high", "new": "critical"}}))
        assert upd.outcome is Outcome.OK and upd.reason == "ticket #1, update, note"
        assert ticket["priority"] == 4 and ticket["subject"].startswith("[CRITICAL]")
        assert "high &rarr; critical" in app.state.notes[1][-1]["body"]
        res = await fs.deliver(c, item("finding.resolved", linked(), status="resolved"))
        assert (res.outcome, res.remote_status, ticket["status"]) == (Outcome.OK, "Resolved", 4)
        reo = await fs.deliver(c, item("finding.reopened", linked()))
        assert (reo.outcome, ticket["status"]) == (Outcome.OK, 2) and "reported again" in app.state.notes[1][-1]["body"]
        sla = await fs.deliver(c, item("finding.sla_breached", linked(), changes={"sla_due_at": "2026-11-29"}))
        assert sla.outcome is Outcome.OK and "has passed" in app.state.notes[1][-1]["body"]
    assert len(app.state.tickets) == 1 and len(app.state.notes[1]) == 4
    assert ("GET", "/api/v2/tickets/filter") not in app.state.calls  # first attempt of a create: no search


async def test_a_step_without_a_linked_ticket_creates_it_first():
    app, fs = fake_freshservice(KEY), connector()
    async with client(fs, app) as c:
        verdict = await fs.deliver(c, item("finding.resolved", creating(), status="resolved"))
    assert verdict.outcome is Outcome.OK and verdict.remote_id == "1" and verdict.reason.startswith("created ticket #1")
    assert [m for m, _ in app.state.calls] == ["GET", "POST", "PUT", "POST"]  # search, create, resolve, note
    assert app.state.tickets[1]["status"] == 4


async def test_a_lost_create_answer_is_adopted_not_duplicated():
    app, fs = fake_freshservice(KEY), connector()
    app.state.lose_creates = 1
    async with client(fs, app) as c:
        first = await fs.deliver(c, item(ref=creating()))
        assert first.outcome is Outcome.RETRY and len(app.state.tickets) == 1  # created, answer lost (502)
        again = await fs.deliver(c, item(ref=creating(), attempt=2))
    assert again.outcome is Outcome.OK and again.remote_id == "1" and again.reason == "adopted ticket #1"
    assert len(app.state.tickets) == 1 and app.state.calls.count(("POST", "/api/v2/tickets")) == 1


async def test_search_failures_are_explained_and_the_search_can_be_off():
    app, fs = fake_freshservice(KEY), connector()
    app.state.tag_filter = False
    async with client(fs, app) as c:
        verdict = await fs.deliver(c, item(ref=creating(), attempt=2))
        assert verdict.outcome is Outcome.PERMANENT and "correlation_query of target fs" in verdict.reason
        assert app.state.tickets == {}  # never create blind when the search could not run
        off = connector(correlation_query=None)
        assert (await off.deliver(c, item(ref=creating(), attempt=2))).outcome is Outcome.OK
    assert len(app.state.tickets) == 1 and ("GET", "/api/v2/tickets/filter") in app.state.calls


async def test_closure_required_fields_and_mandatory_fields_say_what_to_set():
    app, fs = fake_freshservice(KEY), connector()
    app.state.closure_required = {"cf_root_cause"}
    app.state.required_fields = {"cf_team"}
    async with client(fs, app) as c:
        bad = await fs.deliver(c, item(ref=creating()))
        assert bad.outcome is Outcome.PERMANENT and "cf_team: It should not be blank" in bad.reason
        assert "custom_fields of target fs" in bad.reason
        fs = connector(custom_fields={"cf_team": "secops"})
        assert (await fs.deliver(c, item(ref=creating()))).outcome is Outcome.OK
        res = await fs.deliver(c, item("finding.resolved", linked(), status="resolved"))
        assert res.outcome is Outcome.PERMANENT and "cf_root_cause" in res.reason
        assert "required on closure" in res.reason and "resolve_custom_fields of target fs" in res.reason
        fs = connector(custom_fields={"cf_team": "secops"}, resolve_custom_fields={"cf_root_cause": "patched"})
        assert (await fs.deliver(c, item("finding.resolved", linked(), status="resolved"))).outcome is Outcome.OK
    assert app.state.tickets[1]["status"] == 4


async def test_read_status_by_code_batched_and_within_budget():
    app, fs = fake_freshservice(KEY), connector(closed_statuses=[4, 5])
    async with client(fs, app) as c:
        for _ in range(4):
            assert (await fs.deliver(c, item(ref=creating()))).outcome is Outcome.OK
        for tid, status in ((2, 4), (3, 5), (4, 6)):  # 6: an account's custom status
            app.state.tickets[tid]["status"] = status
        refs = [Ref(FID, "fs", str(i), None, None, "linked") for i in (1, 2, 3, 4, 99)]
        got = {s.remote_id: (s.status, s.closed) for s in await fs.read_status(c, refs)}
        assert got == {"1": ("Open", False), "2": ("Resolved", True), "3": ("Closed", True), "4": ("6", False)}
        app.state.remaining = 22  # the account's minute is nearly used up: leave it to ticket writes
        assert len(await fs.read_status(c, refs)) == 3 and await fs.read_status(c, refs) == []
        fs.sync_paused_until = 0
        app.state.remaining, app.state.throttle = 500, 1
        assert await fs.read_status(c, refs) == [] and fs.sync_paused_until > time.monotonic()
        wrong = connector(auth={"api_key": "wrong"})
        with pytest.raises(FreshserviceError, match=re.escape("auth.api_key")):
            await wrong.read_status(c, refs)


# --- status sync by listing changed tickets ------------------------------------------------------------------


async def linked_tickets(fs: FreshserviceConnector, c: httpx.AsyncClient, n: int, made: float) -> list[Ref]:
    """``n`` tickets made by the hub, linked to findings whose ids say they were made at ``made``."""
    refs = []
    for _ in range(n):
        fid = new_id("fnd", made)
        verdict = await fs.deliver(c, item(ref=creating(), id=fid))
        refs.append(Ref(fid, "fs", verdict.remote_id, None, "Open", "linked"))
    return refs


async def sync_run(fs: FreshserviceConnector, c: httpx.AsyncClient, refs: list[Ref], saved: dict[str, Any] | None,
                   now: float) -> tuple[dict[str, bool], dict[str, Any] | None]:
    """One run as hub/sync.py makes it: begin, batches of ``status_batch`` refs, end (the bookmark)."""
    fs.begin_sync(saved, now)
    got: dict[str, bool] = {}
    for i in range(0, len(refs), fs.status_batch):
        got.update((s.remote_id, s.closed) for s in await fs.read_status(c, refs[i:i + fs.status_batch]))
    return got, fs.end_sync()


def lists(app: Any) -> int:
    return app.state.calls.count(("GET", "/api/v2/tickets"))


def views(app: Any) -> int:
    return sum(1 for m, p in app.state.calls if m == "GET" and re.fullmatch(r"/api/v2/tickets/\d+", p))


@pytest.mark.slow
async def test_sync_lists_changed_tickets_in_pages_and_reads_one_only_when_the_listing_cannot_vouch():
    app, fs = fake_freshservice(KEY), connector()
    t0 = time.time()
    clock = [t0]
    app.state.clock = lambda: clock[0]
    async with client(fs, app) as c:
        refs = await linked_tickets(fs, c, 50, t0 - 5)
        await linked_tickets(fs, c, 180, t0)  # other tickets of the account, changed in the window too
        clock[0] = t0 + 600
        for tid in (3, 17, 40):
            app.state.agent_edit(tid, status=5)
        calls = len(app.state.calls)
        got, saved = await sync_run(fs, c, refs, None, clock[0])  # first run: since the oldest finding
        assert len(app.state.calls) - calls == lists(app) == 3  # 100 + 100 + 30 listed, not one view
        assert {t for t, closed in got.items() if closed} == {"3", "17", "40"} and len(got) == 50
        assert saved is not None and saved["ids"] == [str(i) for i in range(1, 51)]

        refs = [r for r in refs if r.remote_id not in ("3", "17", "40", "9")]  # resolved: no longer synced
        clock[0] = t0 + 1200
        app.state.agent_edit(9, status=4)
        del app.state.tickets[12]  # deleted in the portal: not listed, not an error
        calls = len(app.state.calls)
        got, saved = await sync_run(fs, c, [*refs, Ref(new_id("fnd", t0 - 5), "fs", "9", state="linked")], saved,
                                    clock[0])
        assert (len(app.state.calls) - calls, got) == (1, {"9": True})  # one short page since run 1 began

        # linked only now (a create adopted late) to old findings: one ticket a person closed long ago, one
        # deleted. The listing cannot vouch for them, so each is read alone once, then covered by the listing
        assert saved is not None
        app.state.tickets[1]["status"] = 4
        late = [Ref(new_id("fnd", t0 - 86400), "fs", tid, state="linked") for tid in ("1", "12")]
        refs = [*late, *(r for r in refs if r.remote_id not in ("1", "12"))]
        saved = {**saved, "ids": [i for i in saved["ids"] if i not in ("1", "12")]}
        clock[0] = t0 + 1800
        calls = len(app.state.calls)
        got, saved = await sync_run(fs, c, refs, saved, clock[0])
        assert (len(app.state.calls) - calls, views(app), got) == (3, 2, {"1": True})
        assert saved is not None and {"1", "12"} <= set(saved["ids"])
        calls = len(app.state.calls)
        got, saved = await sync_run(fs, c, refs, saved, clock[0] + 600)
        assert (len(app.state.calls) - calls, views(app), got) == (1, 2, {})


@pytest.mark.slow
async def test_sync_pauses_on_a_429_mid_listing_and_the_next_run_finishes():
    app, fs = fake_freshservice(KEY), connector(rate_limit_reserve=0)
    async with client(fs, app) as c:
        refs = await linked_tickets(fs, c, 150, time.time() - 5)
        app.state.agent_edit(120, status=4)
        app.state.remaining = 1  # page 1 uses the last call of the minute; page 2 is answered 429
        assert await sync_run(fs, c, refs, None, time.time()) == ({}, None)  # no bookmark: the run starts over
        assert lists(app) == 2 and views(app) == 0 and fs.sync_paused_until > time.monotonic()
        app.state.remaining, fs.sync_paused_until = 500, 0  # the Retry-After second has passed
        got, saved = await sync_run(fs, c, refs, None, time.time())
        assert lists(app) == 4 and views(app) == 0 and got["120"] and sum(got.values()) == 1 and saved is not None


async def test_sync_keeps_the_reserve_and_reads_tickets_alone_when_too_many_changed(monkeypatch):
    monkeypatch.setattr(fs_module, "LIST_PAGES", 1)  # 1 page instead of 10, so that 120 changes are too many
    app, fs = fake_freshservice(KEY), connector()
    async with client(fs, app) as c:
        refs = await linked_tickets(fs, c, 120, time.time() - 5)
        app.state.agent_edit(2, status=5)
        got, saved = await sync_run(fs, c, refs[:3], None, time.time())
        assert (lists(app), views(app), got) == (1, 3, {"1": False, "2": True, "3": False}) and saved is not None
        app.state.remaining = fs.config.rate_limit_reserve  # the account's minute is nearly used up
        got, saved = await sync_run(fs, c, refs[:3], None, time.time())
        assert (lists(app), views(app), got, saved) == (2, 3, {}, None) and fs.sync_paused_until > time.monotonic()


async def test_fake_lists_and_filters_tickets_as_documented():
    app, fs = fake_freshservice(KEY), connector()
    async with client(fs, app) as c:
        await linked_tickets(fs, c, 35, time.time())
        auth = fs.request("GET", "/tickets", "list").headers

        async def get(path: str, **params: Any) -> httpx.Response:
            return await c.get(f"{URL}/api/v2{path}", params=params, headers=auth)

        for bad in ({"updated_since": "2026-11-22"}, {"updated_since": "2026-11-22T10:00:00+01:00"},
                    {"per_page": 101}, {"page": 0}, {"since": "2026-11-22T10:00:00Z"}):
            assert (await get("/tickets", **bad)).status_code == 400, bad
        page = (await get("/tickets", updated_since="2020-01-01T00:00:00Z", per_page=20, page=2)).json()["tickets"]
        assert [t["id"] for t in page] == list(range(15, 0, -1)) and "tags" not in page[0]  # newest created first
        assert (await get("/tickets", updated_since="2099-01-01T00:00:00Z")).json()["tickets"] == []
        query = '"status:2"'
        assert [len((await get("/tickets/filter", query=query, page=p)).json()["tickets"]) for p in (1, 2)] == [30, 5]
        assert (await get("/tickets/filter", query=query, page=11)).status_code == 400
        assert (await c.get(f"{URL}/api/v2/tickets")).status_code == 401


# --- end to end through a real hub ------------------------------------------------------------------------


class LoseFirstCreate(httpx.AsyncBaseTransport):
    """The vendor creates the ticket, then the connection drops before the answer arrives."""

    def __init__(self, app: Any):
        self.inner, self.lost = httpx.ASGITransport(app=app), 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/api/v2/tickets" and not self.lost:
            self.lost += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def e2e_config(tmp_path: Path, key: str = KEY) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({
            "title": "item.title", "severity": "item.severity", "tool_id": "item.id", "asset.identifier": "item.host"},
            status="item.state")},
        "routes": [{"name": "all", "on": ["finding.created", "finding.updated", "finding.resolved",
                                          "finding.reopened"], "to": ["fs", "archive"]}],
        "targets": {
            "fs": {"type": "freshservice", "url": URL, "auth": {"api_key": key},
                   "requester_email": "vuln-bot@example.com", "rate_limit": {"per_sec": 1000},
                   "retry": {"schedule_secs": [0.05] * 5, "jitter": 0},
                   "circuit_breaker": {"failures": 100, "cooldown_secs": 0.2}},
            "archive": {"type": "file", "path": "out/archive.ndjson"}},
        "pipeline": {"safety_net_secs": 0.5},
    }


def harness(tmp_path: Path, data: dict[str, Any], transport: httpx.AsyncBaseTransport
            ) -> AbstractAsyncContextManager[HubHarness]:
    return HubHarness.running(tmp_path, data, {"fs": transport}, wait=True)  # each send waits until settled


def scan(**kw: Any) -> dict[str, Any]:
    return {"id": "F-1", "title": "Exposed admin panel", "severity": "high", "host": "web-1", "state": "open", **kw}


@pytest.mark.slow
async def test_e2e_create_update_resolve_reopen(tmp_path):
    app = fake_freshservice(KEY)
    async with harness(tmp_path, e2e_config(tmp_path), httpx.ASGITransport(app=app)) as h:
        await h.send([scan()])
        ticket = app.state.tickets[1]
        assert ticket["status"] == 2 and ticket["priority"] == 3 and ticket["subject"] == \
            "[HIGH] Exposed admin panel on web-1"
        assert h.ref("fs") == Ref(h.ref("fs").finding_id, "fs", "1", f"{URL}/a/tickets/1", "Open", "linked")
        await h.send([scan(severity="critical")])
        assert ticket["priority"] == 4 and "high &rarr; critical" in app.state.notes[1][0]["body"]
        await h.send([scan(state="fixed")])
        assert ticket["status"] == 4 and h.ref("fs").remote_status == "Resolved"
        await h.send([scan()])
        assert ticket["status"] == 2 and len(app.state.notes[1]) == 3
    assert len(app.state.tickets) == 1


@pytest.mark.slow
async def test_e2e_lost_create_answers_still_make_one_ticket(tmp_path):
    app = fake_freshservice(KEY)
    async with harness(tmp_path, e2e_config(tmp_path), LoseFirstCreate(app)) as h:
        await h.send([scan()])  # connection dropped after the ticket was made: retried, found by its tag
        [d] = deliveries_of(h.hub.store.conn, target="fs")
        assert (d["state"], d["attempts"], len(app.state.tickets), h.ref("fs").remote_id) == ("done", 2, 1, "1")
        app.state.lose_creates = 1  # now a 502 after the create: same outcome
        await h.send([scan(id="F-2", host="web-2")])
        assert len(app.state.tickets) == 2 and app.state.calls.count(("POST", "/api/v2/tickets")) == 2


@pytest.mark.slow
async def test_e2e_a_human_closing_the_ticket_resolves_the_finding_without_echo(tmp_path):
    app = fake_freshservice(KEY)
    async with harness(tmp_path, e2e_config(tmp_path), httpx.ASGITransport(app=app)) as h:
        await h.send([scan()])
        app.state.tickets[1]["status"] = 5  # an agent closes it in Freshservice
        report = await h.hub.syncs["fs"].run()
        assert (report.checked, report.resolved) == (1, 1)
        await h.until(h.settled)
        [found] = findings_of(h.hub.store.conn)
        assert found.status == "resolved"
        last = finding_rows.history(h.hub.store.conn, found.id)[-1]
        assert last["changes"]["resolved_by"] == "fs" and last["changes"]["remote_status"] == "Closed"
        kinds = [(d["target"], d["kind"]) for d in deliveries_of(h.hub.store.conn)]
        assert ("fs", "finding.resolved") not in kinds and ("archive", "finding.resolved") in kinds
        assert app.state.tickets[1]["status"] == 5 and app.state.notes[1] == []  # nothing echoed back


@pytest.mark.slow
async def test_e2e_a_sync_run_of_50_linked_tickets_lists_them_in_one_request(tmp_path):
    app = fake_freshservice(KEY)
    async with harness(tmp_path, e2e_config(tmp_path), httpx.ASGITransport(app=app)) as h:
        await h.send([scan(id=f"F-{i}", host=f"web-{i}") for i in range(50)])
        assert len(finding_rows.linked_refs(h.hub.store.conn, "fs", limit=EVERY)) == 50
        for tid in (5, 6, 7):
            app.state.agent_edit(tid, status=4)  # people resolve three tickets
        calls = len(app.state.calls)
        report = await h.hub.syncs["fs"].run()
        assert (report.checked, report.resolved, len(app.state.calls) - calls) == (50, 3, 1)
        refs = [finding_rows.ref(h.hub.store.conn, f.id, "fs") for f in findings_of(h.hub.store.conn)
                if f.status == "resolved"]
        assert sorted((r.remote_id for r in refs if r and r.remote_id), key=int) == ["5", "6", "7"]
        bookmark = sync_state.get(h.hub.store.conn, "sync:fs")
        assert bookmark is not None and len(bookmark["ids"]) == 50
        calls = len(app.state.calls)
        report = await h.hub.syncs["fs"].run()  # nothing changed: one page, nothing resolved
        assert (report.checked, report.resolved, len(app.state.calls) - calls) == (47, 0, 1)
        assert app.state.calls[-1] == ("GET", "/api/v2/tickets")


@pytest.mark.slow
async def test_e2e_wrong_api_key_goes_dead_with_a_clear_reason(tmp_path):
    app = fake_freshservice(KEY)
    async with harness(tmp_path, e2e_config(tmp_path, key="not-the-key"), httpx.ASGITransport(app=app)) as h:
        await h.send([scan()])
        [dead] = outbox.listing(h.hub.store.conn, state="dead", target="fs")
        assert dead["attempts"] == 1 and dead["last_status"] == 401 and "auth.api_key" in dead["last_error"]
        shown = CliRunner().invoke(main, ["deliveries", "dead", "--config", str(tmp_path / "hub.yaml"), "--json"])
        assert shown.exit_code == 0 and "check auth.api_key of target fs" in shown.output
        assert "not-the-key" not in shown.output and app.state.tickets == {}


@pytest.mark.slow
async def test_e2e_429_with_retry_after_then_success(tmp_path):
    app = fake_freshservice(KEY)
    app.state.throttle = 1
    async with harness(tmp_path, e2e_config(tmp_path), httpx.ASGITransport(app=app)) as h:
        started = time.monotonic()
        await h.send([scan()])
        assert time.monotonic() - started >= 0.9  # Retry-After: 1 was honoured, not the 0.05 s schedule
        [d] = deliveries_of(h.hub.store.conn, target="fs")
        assert (d["state"], d["attempts"], len(app.state.tickets)) == ("done", 2, 1)
