"""notion: the connector against a Notion double (tests/fakes/notion.py) that enforces Notion's contract, directly
and end to end through an in-process Hub (lifecycle, lost create responses, sync-back without echo, bad
credentials, 429 + Retry-After)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from connectors.notion import NotionConfig, NotionConnector, fit
from hub.cli import main
from hub.connector import Item, Outcome, Ref
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.models import Finding
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store import findings as finding_rows
from tests.fakes.notion import DATA_SOURCE, DATABASE, TOKEN, VERSION, Flaky, NotionState, default_schema, notion_app
from tests.support import HubHarness, deliveries_of, findings_of, scanner_source, write_config

EXAMPLES = BUILTIN_ROOT / "notion" / "examples"
MAPPING = load_mapping("notion", BUILTIN_ROOT / "notion", NotionConnector.payloads)


def example(case: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    doc = orjson.loads((EXAMPLES / f"{case}.finding.json").read_bytes())
    if "kind" in doc:
        kind, raw, changes = doc["kind"], doc["finding"], doc["changes"]
    else:
        kind, raw, changes = "finding.created", doc, {}
    return kind, Finding.model_validate(raw).model_dump(mode="json"), changes  # the shape the hub passes


def connector(**cfg: Any) -> NotionConnector:
    config = NotionConfig.model_validate({"type": "notion", "auth": {"token": TOKEN}, "data_source_id": DATA_SOURCE,
                                          **cfg})
    return NotionConnector("tickets", config, MAPPING)


def item(case: str, ref: Ref | None = None, attempt: int = 1, kind: str | None = None) -> Item:
    k, finding, changes = example(case)
    return Item("dlv_1", kind or k, f"fh_{case}", "route", "tickets", finding, None, changes, ref, attempt)


def linked(page: dict[str, Any]) -> Ref:
    return Ref("fnd_01JDEMO0000000000000000001", "tickets", page["id"], page["url"], None, "linked")


def creating() -> Ref:
    return Ref("fnd_01JDEMO0000000000000000001", "tickets")


def fake(**kw: Any) -> tuple[Any, NotionState]:
    app = notion_app(NotionState(**kw))
    return app, app.state.notion


# --- the connector on its own ------------------------------------------------------------------------------


def test_render_is_the_exact_request_with_the_token_masked():
    c = connector()
    [out] = c.render(item("created"))
    assert (out.method, out.url) == ("POST", "https://api.notion.com/v1/pages")
    assert out.headers["authorization"] == f"Bearer {TOKEN}" and out.headers["notion-version"] == "2026-03-11"
    assert out.masked_headers()["authorization"] == "********"
    body = orjson.loads(out.body)
    assert body["parent"] == {"type": "data_source_id", "data_source_id": DATA_SOURCE}
    golden = orjson.loads((EXAMPLES / "created.page.json").read_bytes())
    assert body["properties"] == golden["properties"] and body["children"] == golden["children"]
    # an update of a linked page: properties, appended blocks, a comment; unlinked: create first
    ref = Ref("fnd_01JDEMO0000000000000000001", "tickets", "page-1", None, None, "linked")
    assert [(o.method, o.url.removeprefix("https://api.notion.com/v1/")) for o in c.render(item("updated", ref))] == [
        ("PATCH", "pages/page-1"), ("PATCH", "blocks/page-1/children"), ("POST", "comments")]
    assert [o.url.rsplit("/v1/", 1)[1] for o in c.render(item("resolved"))] == [
        "pages", "pages/{new_page_id}", "comments"]


async def test_lifecycle_against_the_fake():
    app, state = fake()
    c = connector()
    async with c.client(httpx.ASGITransport(app=app)) as client:
        created = await c.deliver(client, item("created"))
        assert created.outcome is Outcome.OK and created.remote_status == "Not started"
        [page] = state.pages.values()
        assert created.remote_id == page["id"] and created.remote_url == page["url"]
        assert state.value(page, "Finding ID")[0]["plain_text"] == "fnd_01JDEMO0000000000000000001"
        assert state.value(page, "Severity")["name"] == "Critical"
        assert state.value(page, "SLA due")["start"] == "2026-11-29T10:00:00.000Z"
        assert len(state.blocks[page["id"]]) == 16
        ref = linked(page)

        updated = await c.deliver(client, item("updated", ref))
        assert updated.outcome is Outcome.OK and updated.remote_id == page["id"]
        assert state.blocks[page["id"]][-1]["paragraph"]["rich_text"][0]["plain_text"].endswith("payment API.")
        assert "- severity: high -> critical" in state.comments[-1]["rich_text"][0]["plain_text"]

        resolved = await c.deliver(client, item("resolved", ref))
        assert resolved.remote_status == "Done" and state.value(page, "Status")["name"] == "Done"
        reopened = await c.deliver(client, item("reopened", ref))
        assert reopened.remote_status == "Not started" and state.value(page, "Status")["name"] == "Not started"
        before = len(state.requests)
        assert (await c.deliver(client, item("sla_breached", ref))).outcome is Outcome.OK
        assert state.requests[before:] == [("POST", "/v1/comments")]  # a comment, severity left as the scanner said
        assert "SLA breached" in state.comments[-1]["rich_text"][0]["plain_text"]
        assert len(state.pages) == 1 and len(state.comments) == 4


async def test_long_finding_is_split_and_cut_to_notions_limits():
    app, state = fake()
    c = connector()
    async with c.client(httpx.ASGITransport(app=app)) as client:
        verdict = await c.deliver(client, item("long"))
    assert verdict.outcome is Outcome.OK, verdict.reason  # the fake answers 400 on any limit exceeded
    [page] = state.pages.values()
    assert len(state.value(page, "Name")[0]["plain_text"]) == 2000
    assert state.value(page, "Reference") == "https://example.test/advisory/0"  # the 2,100-char URL is skipped
    paragraphs = [b for b in state.blocks[page["id"]] if b["type"] == "paragraph"]
    assert [len(t["plain_text"]) for t in paragraphs[0]["paragraph"]["rich_text"]] == [2000] * 10
    assert paragraphs[1]["paragraph"]["rich_text"][0]["plain_text"].startswith("(cut: 6890 of 26890 characters")


@pytest.mark.slow
def test_fit_splits_and_cuts_what_a_template_overflows(caplog):
    cuts: list[str] = []
    body = {"properties": {"Name": {"title": [{"type": "text", "text": {"content": "t" * 4500}}]},
                           "Reference": {"url": "https://x.test/" + "a" * 2100}},
            "children": [{"type": "paragraph", "paragraph": {"rich_text": [
                {"type": "text", "text": {"content": "p", "link": {"url": "https://x.test/" + "b" * 2000}}}]
                + [{"type": "text", "text": {"content": "q"}}] * 149}}] * 120}
    out = fit(body, cuts)
    assert [len(t["text"]["content"]) for t in out["properties"]["Name"]["title"]] == [2000, 2000, 500]
    assert out["properties"]["Reference"]["url"] is None
    assert len(out["children"]) == 100 and len(out["children"][0]["paragraph"]["rich_text"]) == 100
    assert "link" not in out["children"][0]["paragraph"]["rich_text"][0]["text"]
    assert "children: 20 of 120 items" in cuts and any("a URL of 2115 characters" in c for c in cuts)
    with caplog.at_level(logging.WARNING, "hub.connectors.notion"):
        request = connector().request("POST", "pages", body)
    assert request.meta["cut"] == cuts and "cut to Notion's limits" in caplog.text


async def test_retried_create_adopts_the_page_a_lost_response_made():
    app, state = fake()
    c = connector()
    async with c.client(Flaky(app, ["lost"])) as client:
        with pytest.raises(httpx.TransportError):  # the dispatcher turns this into RETRY
            await c.deliver(client, item("created", creating()))
        [page] = state.pages.values()
        verdict = await c.deliver(client, item("created", creating(), attempt=2))
    assert verdict.outcome is Outcome.OK and verdict.remote_id == page["id"] and len(state.pages) == 1
    assert state.requests[-1] == ("POST", f"/v1/data_sources/{DATA_SOURCE}/query")


async def test_update_of_an_unlinked_finding_creates_then_applies_the_step():
    app, state = fake()
    c = connector()
    async with c.client(httpx.ASGITransport(app=app)) as client:
        verdict = await c.deliver(client, item("resolved", creating()))
    [page] = state.pages.values()
    assert verdict.outcome is Outcome.OK and verdict.remote_id == page["id"] and verdict.remote_status == "Done"
    assert [m + " " + p.split("/")[2] for m, p in state.requests] == [
        "POST data_sources", "POST pages", "PATCH pages", "POST comments"]


@pytest.mark.parametrize("setup, status, outcome, words", [
    (lambda s: setattr(s, "token", "ntn_other"), 401, Outcome.PERMANENT, "auth.token of target 'tickets'"),
    (lambda s: setattr(s, "shared", False), 404, Outcome.PERMANENT, "share the database with the integration"),
    (lambda s: s.schema.pop("Severity"), 400, Outcome.PERMANENT, "Severity is not a property that exists"),
    (lambda s: s.schema["Status"]["status"]["options"].pop(0), 400, Outcome.PERMANENT, "Not started"),
    (lambda s: setattr(s, "version", "2025-09-03"), 400, Outcome.PERMANENT, "validation_error"),
])
async def test_vendor_errors_name_what_to_check(setup: Callable[[NotionState], Any], status, outcome, words):
    app, state = fake()
    setup(state)
    c = connector()
    async with c.client(httpx.ASGITransport(app=app)) as client:
        verdict = await c.deliver(client, item("created"))
    assert (verdict.outcome, verdict.status) == (outcome, status) and words in verdict.reason, verdict.reason
    assert TOKEN not in verdict.reason and not state.pages


@pytest.mark.parametrize("step, outcome, retry_after", [
    ((429, "rate_limited", {"retry-after": "7"}), Outcome.RETRY, 7.0),
    ((529, "service_overload"), Outcome.RETRY, None),
    ((503, "service_unavailable"), Outcome.RETRY, None),
    ((500, "internal_server_error"), Outcome.RETRY, None),
    ((409, "conflict_error"), Outcome.RETRY, None),
    ((400, "invalid_json"), Outcome.PERMANENT, None),
    ((403, "restricted_resource"), Outcome.PERMANENT, None),
])
async def test_classification(step, outcome, retry_after):
    app, _ = fake()
    c = connector()
    async with c.client(Flaky(app, [step])) as client:
        verdict = await c.deliver(client, item("created"))
    assert (verdict.outcome, verdict.retry_after) == (outcome, retry_after)
    assert verdict.reason.startswith(f"HTTP {step[0]} {step[1]}")


async def test_conflict_is_retried_once():
    app, _ = fake()
    c = connector()
    async with c.client(Flaky(app, [(409, "conflict_error")])) as client:
        assert (await c.deliver(client, item("created", attempt=2))).outcome is Outcome.PERMANENT


@pytest.mark.slow
async def test_read_status_batches_queries_and_reads_the_complete_group():
    app, state = fake(page_limit=40)  # results come in pages of 40: the connector follows next_cursor
    c = connector()
    refs = []
    async with c.client(httpx.ASGITransport(app=app)) as client:
        for i in range(130):
            k, finding, _ = example("minimal")
            finding = {**finding, "id": f"fnd_{i:04d}"}
            v = await c.deliver(client, Item("d", k, "k", "r", "tickets", finding))
            refs.append(Ref(finding["id"], "tickets", v.remote_id, v.remote_url, v.remote_status, "linked"))
        state.human_sets_status(refs[3].remote_id, "Done")
        state.human_sets_status(refs[120].remote_id, "Won't fix")  # Complete group, another name
        state.human_sets_status(refs[5].remote_id, "In progress")
        mark = len(state.requests)
        statuses = await c.read_status(client, refs)
        again = await c.read_status(client, refs[:2])
    assert len(statuses) == 130
    closed = {s.remote_id: s.status for s in statuses if s.closed}
    assert closed == {refs[3].remote_id: "Done", refs[120].remote_id: "Won't fix"}
    calls = state.requests[mark:]
    assert calls.count(("GET", f"/v1/data_sources/{DATA_SOURCE}")) == 1  # looked up once, cached
    # 100 ids: 3 pages of 40; 30: 1; 2: 1
    assert calls.count(("POST", f"/v1/data_sources/{DATA_SOURCE}/query")) == 3 + 1 + 1
    assert len(again) == 2


async def test_done_statuses_configured_or_fallback():
    app, state = fake()
    async with connector().client(httpx.ASGITransport(app=app)) as client:
        assert await connector(done_statuses=["In progress"]).done_statuses(client) == {"In progress"}
        state.schema["Status"] = {"id": "St%3F", "name": "Status", "type": "select", "select": {"options": []}}
        assert await connector(resolved_status="Closed").done_statuses(client) == {"Closed"}  # no status groups
        state.schema["Status"] = default_schema()["Status"]
        assert await connector(open_status="Done").done_statuses(client) == {"Won't fix"}  # never the open status
        state.shared = False
        with pytest.raises(Exception, match="share the database with the integration"):
            await connector().read_status(client, [Ref("f", "tickets", "p", None, None, "linked")])


async def test_the_fake_enforces_notions_contract():
    app, _ = fake()
    base = {"authorization": f"Bearer {TOKEN}", "notion-version": VERSION}
    page = {"parent": {"type": "data_source_id", "data_source_id": DATA_SOURCE},
            "properties": {"Name": {"title": [{"text": {"content": "x"}}]}}}

    def with_(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        doc = orjson.loads(orjson.dumps(page))
        target = doc
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
        return doc

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.notion.com") as h:
        assert (await h.post("/v1/pages", json=page, headers=base)).status_code == 200
        r = await h.post("/v1/pages", json=page, headers={"authorization": f"Bearer {TOKEN}"})
        assert (r.status_code, r.json()["code"]) == (400, "missing_version")
        r = await h.post("/v1/pages", json=page, headers={**base, "authorization": TOKEN})
        assert (r.status_code, r.json()["object"], r.json()["code"]) == (401, "error", "unauthorized")
        bad = [with_(("properties", "Name", "title"), [{"text": {"content": "x" * 2001}}]),
               with_(("properties", "Name", "title"), [{"text": {"content": "x"}}] * 101),
               with_(("properties", "Reference"), {"url": "https://x.test/" + "a" * 2000}),
               with_(("properties", "Severity"), {"rich_text": []}),
               with_(("properties", "Nmae"), {"title": []}),
               with_(("properties", "Status"), {"status": {"name": "Closed"}}),
               with_(("children",), [{"type": "paragraph", "paragraph": {"rich_text": []}}] * 101),
               with_(("archived",), True)]
        for doc in bad:
            r = await h.post("/v1/pages", json=doc, headers=base)
            assert (r.status_code, r.json()["code"]) == (400, "validation_error"), doc
        r = await h.get(f"/v1/databases/{DATABASE}", headers=base)
        assert r.json()["data_sources"][0]["id"] == DATA_SOURCE


def test_config_contract(tmp_path):
    config = NotionConfig.model_validate({"type": "notion", "auth": {"token": TOKEN}, "data_source_id": "ds"})
    assert TOKEN not in repr(config) and TOKEN not in str(config.public())
    data = hub_config(tmp_path)
    data["targets"]["tickets"]["data_source"] = "x"
    data["targets"]["tickets"]["done_statuses"] = ["Done", "Not started"]
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    assert 'targets.tickets.data_source: unknown key; did you mean "data_source_id"?' in str(info.value)
    del data["targets"]["tickets"]["data_source"]
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    assert "targets.tickets.done_statuses: contains open_status 'Not started'" in str(info.value)


# --- end to end through the hub ----------------------------------------------------------------------------


def hub_config(tmp_path: Path, token: str = TOKEN) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({
            "title": "item.title", "severity": "item.severity", "tool_id": "item.id", "asset.identifier": "item.host",
            "description": "item.description"}, status="item.state")},
        "routes": [{"name": "all", "on": ["finding.created", "finding.updated", "finding.resolved",
                                          "finding.reopened"], "to": ["tickets", "archive"]}],
        "targets": {
            "tickets": {"type": "notion", "auth": {"token": token}, "data_source_id": DATA_SOURCE,
                        "retry": {"schedule_secs": [0.05] * 5, "jitter": 0}, "rate_limit": {"per_sec": 1000},
                        "circuit_breaker": {"failures": 100, "cooldown_secs": 0.2}},
            "archive": {"type": "file", "path": str(tmp_path / "archive.ndjson")}},
        "pipeline": {"safety_net_secs": 0.5},
    }


def harness(tmp_path: Path, transport: httpx.AsyncBaseTransport, token: str = TOKEN
            ) -> AbstractAsyncContextManager[HubHarness]:
    return HubHarness.running(tmp_path, hub_config(tmp_path, token), {"tickets": transport}, scheduler=False)


def finding(**kw: Any) -> dict[str, Any]:
    return {"id": "F-1", "title": "Outdated nginx", "severity": "high", "host": "web-1", "state": "open",
            "description": "nginx 1.18 is end of life.", **kw}


@pytest.mark.slow
async def test_create_update_resolve_reopen_one_page(tmp_path):
    app, state = fake()
    async with harness(tmp_path, httpx.ASGITransport(app=app)) as h:
        await h.send([finding()])
        await h.until(lambda: h.states("tickets") == {"done": 1})
        [page] = state.pages.values()
        ref = h.ref("tickets")
        assert (ref.state, ref.remote_id, ref.remote_status) == ("linked", page["id"], "Not started")
        await h.send([finding(severity="critical", description="nginx 1.18 is end of life; CVE-2021-23017 applies.")])
        await h.until(lambda: h.states("tickets") == {"done": 2})
        assert state.value(page, "Severity")["name"] == "Critical"
        assert state.value(page, "Name")[0]["plain_text"] == "[CRITICAL] Outdated nginx on web-1"
        assert "CVE-2021-23017" in state.blocks[page["id"]][-1]["paragraph"]["rich_text"][0]["plain_text"]
        await h.send([finding(severity="critical", state="fixed")])
        await h.until(lambda: h.states("tickets") == {"done": 3})
        assert state.value(page, "Status")["name"] == "Done" and h.ref("tickets").remote_status == "Done"
        await h.send([finding(severity="critical")])
        await h.until(lambda: h.states("tickets") == {"done": 4})
        assert state.value(page, "Status")["name"] == "Not started" and len(state.pages) == 1
        texts = [c["rich_text"][0]["plain_text"] for c in state.comments]
        assert len(texts) == 3 and texts[0].startswith("Findings Hub: the finding changed.\n- description: updated")
        assert texts[1].startswith("Findings Hub: the finding was resolved at 20") and texts[1].endswith("Done.")
        assert texts[2] == "Findings Hub: the finding was seen again and is open again; status set to Not started."


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["lost", "lost-502"])
async def test_a_lost_create_response_still_makes_one_page(tmp_path, loss):
    app, state = fake()
    async with harness(tmp_path, Flaky(app, [loss])) as h:
        await h.send([finding()])
        await h.until(lambda: h.states("tickets") == {"done": 1})
        [page] = state.pages.values()
        assert h.ref("tickets").remote_id == page["id"]
        assert [d["attempts"] for d in deliveries_of(h.hub.store.conn, target="tickets")] == [2]


@pytest.mark.slow
async def test_a_human_closing_the_page_resolves_the_finding_without_echo(tmp_path):
    app, state = fake()
    async with harness(tmp_path, httpx.ASGITransport(app=app)) as h:
        await h.send([finding()])
        await h.until(h.settled)
        [page] = state.pages.values()
        state.human_sets_status(page["id"], "Won't fix")
        report = await h.hub.syncs["tickets"].run()
        assert (report.checked, report.resolved) == (1, 1)
        await h.until(h.settled)
        [found] = findings_of(h.hub.store.conn)
        assert found.status == "resolved"
        last = finding_rows.history(h.hub.store.conn, found.id)[-1]
        assert last["changes"]["resolved_by"] == "tickets" and last["changes"]["remote_status"] == "Won't fix"
        assert h.states("tickets") == {"done": 1}  # no finding.resolved back to Notion
        assert [d["kind"] for d in deliveries_of(h.hub.store.conn, target="archive")] == [
            "finding.created", "finding.resolved"]
        assert state.value(page, "Status")["name"] == "Won't fix" and len(state.comments) == 0


@pytest.mark.slow
async def test_wrong_credentials_dead_letter_with_a_clear_reason(tmp_path):
    app, state = fake()
    async with harness(tmp_path, httpx.ASGITransport(app=app), token="ntn_wrong_token_value") as h:
        await h.send([finding()])
        await h.until(lambda: h.states("tickets") == {"dead": 1})
        [dead] = outbox.listing(h.hub.store.conn, state="dead", target="tickets")
        assert dead["attempts"] == 1 and dead["last_status"] == 401
        assert "check NOTION_TOKEN / the auth.token of target 'tickets'" in dead["last_error"]
        assert "ntn_wrong_token_value" not in dead["last_error"] and not state.pages
        shown = CliRunner().invoke(main, ["deliveries", "dead", "--config", str(tmp_path / "hub.yaml")])
        assert shown.exit_code == 0 and "HTTP 401 unauthorized: API token is invalid." in shown.output


@pytest.mark.slow
async def test_rate_limited_then_created(tmp_path):
    app, state = fake()
    async with harness(tmp_path, Flaky(app, [(429, "rate_limited", {"retry-after": "1"})])) as h:
        started = time.monotonic()
        await h.send([finding()])
        await h.until(lambda: h.states("tickets") == {"done": 1})
        assert time.monotonic() - started >= 0.9  # Retry-After honoured, not the 0.05 s schedule
        assert len(state.pages) == 1 and h.ref("tickets").state == "linked"
        assert [d["attempts"] for d in deliveries_of(h.hub.store.conn, target="tickets")] == [2]
