"""The operator console at /ui/ (issue 14): token login into a signed session, read-only tokens, CSRF, security
headers, no secret on any page, filters and keyset pages in the URL, the event trace, replay (audited), CSV export.

The hub runs in-process behind an ASGI client on a clock the tests move; targets are mock transports."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from hub import tokens
from hub.app import create_app
from hub.cli import main
from hub.errors import StoreUnavailableError
from hub.explain import explain
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import deliveries as delivery_rows
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store import tokens as token_rows
from tests.support import EVERY, SW_SECRET, HubHarness, findings_of, scanner_source, write_config

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="
BEARER = "vendor-credential-5f1e2d3c4b5a"  # the `dead` target's authorization header
SESSION_KEY = "console-session-key-0123456789abcdef-xyz"


def config(tmp_path: Path, **console: Any) -> dict[str, Any]:
    hook = {"type": "webhook", "secret": OUT_SECRET}
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id", "severity": "item.sev",
                                               "asset.identifier": "item.host"}),
                    "other": scanner_source({"title": "item.title", "tool_id": "item.id"})},
        "routes": [{"name": "all", "on": ["finding.created"], "from": ["scanner"], "to": ["ok", "dead"]},
                   {"name": "crit", "on": ["finding.updated"], "when": 'finding.severity == "critical"',
                    "to": ["ok"]}],
        "targets": {"ok": {**hook, "url": "http://ok.test/hook"},
                    "dead": {**hook, "url": "http://dead.test/hook", "retry": {"schedule_secs": []},
                             "headers": {"authorization": f"Bearer {BEARER}"}}},
        "console": {"session_secret": SESSION_KEY, **console},
    }


class Console:
    """A hub, a client on its app, and a login helper; ``skew`` moves the hub's clock."""

    def __init__(self, hub: Hub, client: httpx.AsyncClient, path: Path, skew: list[float], dead: list[int]):
        self.hub, self.client, self.path, self.skew, self.dead = hub, client, path, skew, dead
        self.harness = HubHarness(hub, client)

    def token(self, *scopes: str, name: str = "ops") -> str:
        args = ["tokens", "create", "--config", str(self.path), "--name", name, *(a for s in scopes
                                                                                for a in ("--scope", s))]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[0]

    async def login(self, token: str, next_page: str = "/ui/") -> httpx.Response:
        self.client.cookies.clear()  # a new browser
        form = await self.client.get("/ui/login")
        return await self.client.post("/ui/login", data={"csrf": csrf(form), "token": token, "next": next_page})

    async def page(self, path: str, status: int = 200) -> str:
        r = await self.client.get(path)
        assert r.status_code == status, (path, r.status_code, r.text[:500])
        return r.text

    def state(self, delivery_id: str) -> str:
        row = delivery_rows.get(self.hub.store.conn, delivery_id)
        assert row is not None
        return str(row["state"])

    def audit(self, action: str) -> list[dict[str, Any]]:
        return [a for a in token_rows.audit_listing(self.hub.store.conn, 1000) if a["action"] == action]


def csrf(page: httpx.Response | str) -> str:
    text = page if isinstance(page, str) else page.text
    found = re.search(r'name="csrf" value="([^"]*)"', text)
    assert found, "no CSRF field on the page"
    return found.group(1)


def linked(html: str, prefix: str) -> list[str]:
    """The ids the list's first column links to, in page order."""
    body = html.split('<table class="list">', 1)[1].split("</table>", 1)[0]
    return re.findall(rf'<td class="c-id"><a href="/ui/\w+/({prefix}\w+)">', body)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **console: Any) -> AsyncIterator[Console]:
    path = write_config(tmp_path / "hub.yaml", config(tmp_path, **console))
    skew, dead = [0.0], [400]  # `dead` answers dead[0] (400: permanent, the delivery dies at once)
    transports = {"ok": httpx.MockTransport(lambda r: httpx.Response(200)),
                  "dead": httpx.MockTransport(lambda r: httpx.Response(dead[0]))}
    hub = Hub(load_config(path), clock=lambda: time.time() + skew[0], transports=transports, scheduler=False)
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub), client=("198.51.100.7", 1)),
                                     base_url="http://hub.test") as client:
            yield Console(hub, client, path, skew, dead)
    finally:
        await hub.aclose()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with running(tmp_path) as c:
        yield c


async def sent(c: Console) -> dict[str, str]:
    """One event of two findings, delivered to `ok` and dead at `dead`: {tool id: finding id}."""
    await c.harness.send([{"id": "A", "title": "Critical one", "sev": "critical", "host": "web-1"},
                          {"id": "B", "title": "=HYPERLINK(\"http://x.test\")", "sev": "high", "host": "web-2"}])
    await c.harness.until(lambda: c.harness.states("ok") == {"done": 2} and c.harness.states("dead") == {"dead": 2})
    return {str(f.tool_id): f.id for f in findings_of(c.hub.store.conn)}


async def test_root_redirects_to_the_console(console):
    r = await console.client.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    r = await console.client.get("/ui/")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2F"


async def test_console_off_is_404(tmp_path):
    async with running(tmp_path, enabled=False) as c:
        assert (await c.client.get("/ui/")).status_code == 404
        assert (await c.client.get("/ui/login")).status_code == 404
        assert (await c.client.get("/")).status_code == 404


@pytest.mark.slow
async def test_login_logout_cookie_flags_and_expiry(console):
    c = console
    r = await c.client.get("/ui/events?state=failed")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fevents%3Fstate%3Dfailed"
    bad = await c.login("fh_0123456789_not-the-secret")
    assert bad.status_code == 401 and "not valid" in bad.text
    assert [a["result"] for a in c.audit("console.login")] == ["401 invalid_token"]
    ingest = await c.login(c.token("ingest", name="sender"))
    assert ingest.status_code == 401  # a token that may only send findings does not open the console
    admin = c.token("admin")
    r = await c.login(admin, "/ui/events?state=failed")
    assert r.status_code == 303 and r.headers["location"] == "/ui/events?state=failed"
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("hub_console=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie and "max-age=43200" in cookie
    assert admin not in r.headers["set-cookie"] and admin.split("_")[-1] not in r.headers["set-cookie"]
    assert c.audit("console.login")[0]["result"] == "ok"
    assert "Log out" in await c.page("/ui/events?state=failed")
    assert (await c.client.get("/ui/login?next=/ui/findings")).headers["location"] == "/ui/findings"
    evil = await c.login(admin, "//evil.test/")
    assert evil.headers["location"] == "/ui/"  # never sent off the console after a login

    home = await c.page("/ui/")
    assert (await c.client.post("/ui/logout", data={"csrf": "forged"})).status_code == 403
    r = await c.client.post("/ui/logout", data={"csrf": csrf(home)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert (await c.client.get("/ui/")).status_code == 303
    assert c.audit("console.logout")

    await c.login(admin)
    assert (await c.client.get("/ui/")).status_code == 200
    c.skew[0] = 12 * 3600 + 1  # past session_hours: the signed expiry ends it, whatever the browser keeps
    assert (await c.client.get("/ui/")).status_code == 303
    c.skew[0] = 0
    await c.login(admin)
    CliRunner().invoke(main, ["tokens", "revoke", str(tokens.token_id(admin)), "--config", str(c.path)])
    assert (await c.client.get("/ui/")).status_code == 303  # a revoked token ends its sessions
    c.client.cookies.set("hub_console", "eyJuIjoieCIsInQiOiJ4IiwiZSI6OWU5fQ.forged", path="/ui")
    assert (await c.client.get("/ui/")).status_code == 303


async def test_csrf_token_is_checked_on_every_action(console):
    c = console
    await sent(c)
    [dead, _] = delivery_rows.listing(c.hub.store.conn, state="dead")
    other = csrf(await c.client.get("/ui/login"))  # another session's token (the login form's)
    admin = c.token("admin")
    r = await c.client.post("/ui/login", data={"csrf": "forged", "token": admin, "next": "/ui/"})
    assert r.status_code == 403 and (await c.client.get("/ui/")).status_code == 303  # the login form has one too
    await c.login(admin)
    page = await c.page(f"/ui/deliveries/{dead['id']}")
    for form in ({}, {"csrf": ""}, {"csrf": csrf(page)[:-2] + "xx"}):
        r = await c.client.post(f"/ui/deliveries/{dead['id']}/replay", data=form)
        assert r.status_code == 403 and "CSRF" in r.text
    assert (await c.client.post("/ui/events/evt_1/reprocess", data={})).status_code == 403
    assert (await c.client.post(f"/ui/deliveries/{dead['id']}/replay", data={"csrf": other})).status_code == 403
    assert c.state(dead["id"]) == "dead"
    assert not c.audit("console.deliveries.replay")


@pytest.mark.slow
async def test_a_read_only_token_sees_no_action_and_its_posts_are_refused(console):
    c = console
    await sent(c)
    [dead, _] = delivery_rows.listing(c.hub.store.conn, state="dead")
    await c.login(c.token("read", name="viewer"))
    page = await c.page(f"/ui/deliveries/{dead['id']}")
    assert "read-only" in page and "Replay" not in page and "/replay" not in page
    assert "Reprocess" not in await c.page("/ui/events/evt_1")
    r = await c.client.post(f"/ui/deliveries/{dead['id']}/replay", data={"csrf": csrf(page)})
    assert r.status_code == 403 and "read-only" in r.text
    assert (await c.client.post("/ui/events/evt_1/reprocess", data={"csrf": csrf(page)})).status_code == 403
    assert c.state(dead["id"]) == "dead"
    await c.login(c.token("admin"))
    assert "Replay" in await c.page(f"/ui/deliveries/{dead['id']}")


@pytest.mark.slow
async def test_every_page_has_the_security_headers_and_no_secret(console):
    c = console
    ids = await sent(c)
    [dead, _] = delivery_rows.listing(c.hub.store.conn, state="dead")
    admin = c.token("admin")
    pages = ["/ui/login", "/ui/", "/ui/", "/ui/events", "/ui/events/evt_1", "/ui/findings", f"/ui/findings/{ids['A']}",
              "/ui/deliveries", f"/ui/deliveries/{dead['id']}", f"/ui/explain?id={ids['A']}", "/ui/explain?id=evt_1",
              "/ui/events/evt_999", "/ui/nope", "/ui/events?state=nope", "/ui/events.csv", "/ui/deliveries.csv",
              "/ui/static/console.css", "/ui/static/console.js"]
    secrets = [SW_SECRET, OUT_SECRET, OUT_SECRET.removeprefix("whsec_"), BEARER, SESSION_KEY, admin,
               admin.split("_", 2)[2], tokens.digest(admin)]
    for n, path in enumerate(pages):
        r = await c.client.get(path)
        if n == 1:  # the login's redirect, then every page logged in
            assert r.status_code == 303
            await c.login(admin)
            continue
        assert r.status_code in (200, 400, 404), (path, r.status_code)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"], path
        assert not [s for s in secrets if s in r.text], path
        if r.headers["content-type"].startswith("text/html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text) and " style=" not in r.text, path
    rendered = await c.page(f"/ui/deliveries/{dead['id']}")
    assert "authorization: ********" in rendered.lower() and "POST http://dead.test/hook" in rendered


async def test_a_wrong_method_on_a_console_page_is_a_405_with_the_security_headers(console):
    c = console
    await c.login(c.token("read"))
    for method, path in (("POST", "/ui/events"), ("PUT", "/ui/"), ("DELETE", "/ui/login"), ("GET", "/ui/logout")):
        r = await c.client.request(method, path)
        assert r.status_code == 405, (method, path, r.status_code)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store", path
        assert r.headers["content-type"].startswith("text/html") and f"does not take {method}" in r.text, path
        assert r.headers["allow"], path
    r = await c.client.post("/healthz")  # outside the console: the app's JSON answer, as before
    assert r.status_code == 405 and r.headers["content-type"] == "application/json"


async def test_filters_and_keyset_pages_are_in_the_url_and_exact(console):
    c = console
    body = b'{"findings": []}'
    for n in range(7):
        for source in ("scanner", "other"):
            c.hub.store.write_sync(lambda conn, s=source, k=n: event_rows.insert(conn, event_rows.NewEvent(
                s, "2026-11-22T06:00:00.000Z", f"k{k}", "application/json", "{}", body, "test")))
    await c.login(c.token("read"))
    expected = [r["id"] for r in event_rows.listing(c.hub.store.conn, source="other", limit=EVERY)]
    url, seen, pages = "/ui/events?source=other&limit=3", [], 0
    while url:
        html = await c.page(url)
        assert 'value="other" selected' in html  # the filter stays in the form
        seen += linked(html, "evt_")
        pages += 1
        found = re.search(r'<a href="(\?[^"]+)" rel="next">', html)
        url = "/ui/events" + found.group(1).replace("&amp;", "&") if found else ""
        if url:
            assert "source=other" in url and "limit=3" in url and f"before={seen[-1]}" in url
    assert seen == expected and pages == 3 and len(seen) == 7
    assert "Nothing matches" in await c.page("/ui/events?source=other&until=2026-11-22T06:00:00Z")
    assert linked(await c.page("/ui/events?source=other&since=2026-11-22T06:00:00Z&limit=500"), "evt_") == expected
    assert "unknown parameter(s): sorce" in await c.page("/ui/events?sorce=other", 400)
    assert "state must be one of" in await c.page("/ui/events?state=done", 400)
    assert "since must be a time" in await c.page("/ui/events?since=yesterday", 400)


@pytest.mark.slow
async def test_the_event_trace_shows_its_findings_and_deliveries(console):
    c = console
    ids = await sent(c)
    await c.login(c.token("read"))
    html = await c.page("/ui/events/evt_1")
    assert "standard-webhooks" in html and "webhook-signature" in html  # verified scheme, stored headers
    caused = delivery_rows.listing(c.hub.store.conn, event="evt_1")
    assert len(caused) == 4 and all(f'href="/ui/deliveries/{d["id"]}"' in html for d in caused)
    assert all(f'href="/ui/findings/{ids[t]}"' in html for t in "AB")
    finding = await c.page(f"/ui/findings/{ids['A']}")
    assert "finding.created" in finding and 'href="/ui/events/evt_1"' in finding and "<h3>dead</h3>" in finding
    verdicts = explain(c.hub.store.conn, c.hub.config, ids["A"])
    assert verdicts is not None
    shown = await c.page(f"/ui/explain?id={ids['A']}")
    assert all(v.reason.replace('"', "&#34;") in shown for s in verdicts.steps for v in s.routes)
    assert "No event or finding fnd_nope" in await c.page("/ui/explain?id=fnd_nope", 404)
    r = await c.client.get("/ui/go?q=evt_1")
    assert r.status_code == 303 and r.headers["location"] == "/ui/events/evt_1"


@pytest.mark.slow
async def test_replay_sends_again_and_is_audited(console):
    c = console
    await sent(c)
    [dead, _] = delivery_rows.listing(c.hub.store.conn, state="dead", target="dead")
    await c.login(c.token("admin"))
    page = await c.page(f"/ui/deliveries/{dead['id']}")
    c.dead[0] = 200
    r = await c.client.post(f"/ui/deliveries/{dead['id']}/replay", data={"csrf": csrf(page)})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/deliveries/{dead['id']}?done=replay"
    await c.harness.until(lambda: c.state(dead["id"]) == "done")
    assert c.harness.states("dead") == {"dead": 1, "done": 1}  # that one, no other
    [row] = c.audit("console.deliveries.replay")
    assert row["target"] == dead["id"] and row["result"] == "ok" and row["actor"].startswith("token:ops (")
    assert row["detail"]["before"] == {"state": "dead", "attempts": 1}
    assert row["detail"]["after"]["state"] == "pending"

    event = await c.page("/ui/events/evt_1")
    r = await c.client.post("/ui/events/evt_1/reprocess", data={"csrf": csrf(event)})
    assert r.status_code == 303
    await c.harness.until(lambda: (event_rows.get(c.hub.store.conn, "evt_1") or {}).get("attempts") == 2)
    [row] = c.audit("console.events.reprocess")
    assert row["detail"] == {"before": {"state": "processed", "error": None}, "after": {"state": "pending",
                                                                                       "error": None}}


async def test_csv_export_is_the_filtered_list_in_the_on_screen_columns(console):
    c = console
    ids = await sent(c)
    await c.login(c.token("read"))
    for name, query, expected in (
            ("deliveries", "target=dead", delivery_rows.listing(c.hub.store.conn, target="dead", limit=EVERY)),
            ("events", "source=scanner", event_rows.listing(c.hub.store.conn, source="scanner", limit=EVERY)),
            ("findings", "severity=high", finding_rows.page(c.hub.store.conn, severity="high", limit=EVERY))):
        html = await c.page(f"/ui/{name}?{query}&limit=1")
        head = html.split('<table class="list">')[1].split("</thead>")[0]
        titles = [re.sub(r"<[^>]+>", "", t).strip(" ▲▼") for t in re.findall(r'<th scope="col"[^>]*>(.*?)</th>', head)]
        r = await c.client.get(f"/ui/{name}.csv?{query}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(r.text)))
        assert rows[0] == titles
        assert [row[0] for row in rows[1:]] == [e["id"] for e in expected], name
    findings = list(csv.DictReader(io.StringIO((await c.client.get("/ui/findings.csv?severity=high")).text)))
    assert [f["ID"] for f in findings] == [ids["B"]]
    assert findings[0]["Title"] == "'=HYPERLINK(\"http://x.test\")"  # a formula is text to a spreadsheet


async def test_the_overview_counts_the_last_hour_per_source_and_target(console):
    c = console
    await sent(c)
    await c.login(c.token("read"))
    html = await c.page("/ui/")
    rows = {m[0]: re.findall(r"<td[^>]*>(?:<a [^>]*>)?([^<]*)", m[1]) for m in
            re.findall(r'<tr><td><a href="/ui/\w+\?\w+=(\w+)">\w+</a></td>(.*?)</tr>', html, re.S)}
    assert rows["scanner"] == ["1", "0", "0", "0"] and rows["other"] == ["0", "0", "0", "0"]
    assert rows["ok"] == ["0", "-", "2", "0", "0", "closed"]  # queue, oldest, delivered, failed, dead, circuit
    assert rows["dead"] == ["0", "-", "0", "2", "2", "closed"]
    assert html.count('<rect class="bar-ok"') == 1 and html.count('<rect class="bar-failed"') == 1
    c.skew[0] = 3601  # an hour later nothing is left in the window but the dead letters
    html = await c.page("/ui/")
    assert "<rect" not in html and "no attempts in the last hour" in html


@pytest.mark.slow
async def test_a_page_reads_a_fixed_number_of_queries_however_many_rows_it_shows(console):
    c = console
    await sent(c)
    await c.login(c.token("read"))
    statements: list[str] = []
    c.hub.store.conn.set_trace_callback(statements.append)

    async def count(path: str) -> int:
        statements.clear()
        await c.page(path)
        return len(statements)

    pages = ["/ui/", "/ui/events", "/ui/findings", "/ui/deliveries"]
    few = [await count(p) for p in [*pages, "/ui/events/evt_1"]]
    await c.harness.send([{"id": f"M{n}", "title": f"More {n}", "sev": "low", "host": "web-3"} for n in range(6)])
    await c.harness.until(lambda: c.harness.states("ok") == {"done": 8})
    many = [await count(p) for p in [*pages, "/ui/events/evt_2"]]  # evt_2 made 6 findings and 12 deliveries
    assert many == few


async def test_an_action_the_store_cannot_commit_is_a_503_and_changes_nothing(console, monkeypatch):
    c = console
    await sent(c)
    [dead, _] = delivery_rows.listing(c.hub.store.conn, state="dead")
    await c.login(c.token("admin"))
    page = await c.page(f"/ui/deliveries/{dead['id']}")

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("disk full")

    monkeypatch.setattr(c.hub.store, "write", refused)
    r = await c.client.post(f"/ui/deliveries/{dead['id']}/replay", data={"csrf": csrf(page)})
    assert r.status_code == 503 and "cannot commit" in r.text
    assert c.state(dead["id"]) == "dead" and not c.audit("console.deliveries.replay")
