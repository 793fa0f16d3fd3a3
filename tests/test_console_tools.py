"""The console's mapping playground, tokens and audit pages (issue 14): the playground renders what `hub render`
prints, re-renders an edit without saving it, names the template line of an error and never shows a secret; tokens
are created (shown once), listed and revoked by an admin only, each change audited; the audit log pages and filters.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from click.testing import CliRunner

import connectors.webhook as webhook_connector
from connectors.webhook import WebhookConfig, WebhookConnector
from hub import tokens
from hub.cli import main
from hub.connector import Item, Outbound
from hub.mappings import BUILTIN_ROOT, example_from, load_mapping
from hub.store import findings as finding_rows
from hub.ui import playground
from hub.ui.pages import pretty
from tests.test_console import BEARER, OUT_SECRET, SESSION_KEY, Console, csrf, running, sent


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Console]:
    async with running(tmp_path) as console:
        yield console


def requests_on(page: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'<pre class="request">(.*?)</pre>', page, re.S)]


def problem_on(page: str) -> str:
    found = re.search(r'<p class="problem" role="alert">(.*?)</p>', page, re.S)
    assert found, "no problem shown"
    return html.unescape(found.group(1))


async def test_the_playground_renders_what_hub_render_prints_for_a_stored_finding(c, tmp_path, monkeypatch):
    ids = await sent(c)
    # the webhook connector signs with the current second (webhook-timestamp): both renders sign at one time, or a
    # second that ends between them (more likely on PostgreSQL, whose reads are round trips) makes them differ
    monkeypatch.setattr(webhook_connector, "time", SimpleNamespace(time=lambda: 1_790_000_000.0))
    found = finding_rows.get(c.hub.store.conn, ids["A"])
    assert found is not None
    file = tmp_path / "finding.json"
    file.write_bytes(orjson.dumps(found.model_dump(mode="json")))
    result = CliRunner().invoke(main, ["render", "--config", str(c.path), "--target", "dead", "--finding", str(file),
                                       "--json"])
    assert result.exit_code == 0, result.output
    [cli] = orjson.loads(result.output)
    await c.login(c.token("read", name="viewer"))  # a read-only viewer may use it: it changes nothing
    page = await c.page(f"/ui/playground?target=dead&id={ids['A']}")
    headers = "".join(f"{k}: {v}\n" for k, v in cli["headers"].items())
    assert requests_on(page) == [f"{cli['method']} {cli['url']}\n{headers}\n{pretty(orjson.loads(cli['body']))}"]
    assert cli["headers"]["authorization"] == "********" and BEARER not in page
    assert "3 of 3 pass" in page  # the webhook mapping's golden examples
    event_page = await c.page("/ui/playground?target=ok&id=evt_1")
    [event_request] = requests_on(event_page)
    assert '"event": {' in event_request and '"id": "evt_1"' in event_request
    assert "No finding or event fnd_nope" in await c.page("/ui/playground?target=ok&id=fnd_nope", 404)


async def test_an_edited_template_renders_again_without_being_saved(c):
    ids = await sent(c)
    await c.login(c.token("read", name="viewer"))
    page = await c.page(f"/ui/playground?target=ok&id={ids['A']}")
    form = {"csrf": csrf(page), "target": "ok", "id": ids["A"], "kind": "finding.created", "template": "body.json.j2",
            "text": '{"edited": {{ finding.title|tojson }}, "sev": {{ finding.severity|tojson }}}'}
    r = await c.client.post("/ui/playground", data=form)
    assert r.status_code == 200
    [request] = requests_on(r.text)
    assert request.endswith('{\n  "edited": "Critical one",\n  "sev": "critical"\n}')
    assert "0 of 3 pass; 3 fail" in r.text and "+  &#34;edited&#34;" in r.text  # the goldens' diff, against the edit
    again = await c.page(f"/ui/playground?target=ok&id={ids['A']}")
    assert '"edited"' not in requests_on(again)[0] and "3 of 3 pass" in again  # nothing was saved
    assert (await c.client.post("/ui/playground", data={**form, "csrf": "forged"})).status_code == 403


async def test_a_template_links_back_to_the_console_when_public_url_is_set(tmp_path):
    text = '{"see": {{ links.finding|tojson }}, "keys": {{ links|list|sort|tojson }}}'
    async with running(tmp_path, public_url="https://hub.example.com/") as c:
        ids = await sent(c)
        await c.login(c.token("read"))
        page = await c.page(f"/ui/playground?target=ok&id={ids['A']}")
        form = {"csrf": csrf(page), "target": "ok", "id": ids["A"], "kind": "finding.created",
                "template": "body.json.j2", "text": text}
        [request] = requests_on((await c.client.post("/ui/playground", data=form)).text)
    assert request.endswith(f'"see": "https://hub.example.com/ui/findings/{ids["A"]}",\n'
                            '  "keys": [\n    "delivery",\n    "finding"\n  ]\n}')
    (tmp_path / "unset").mkdir()
    async with running(tmp_path / "unset") as c:
        ids = await sent(c)
        await c.login(c.token("read"))
        page = await c.page(f"/ui/playground?target=ok&id={ids['A']}")
        form = {**form, "csrf": csrf(page), "id": ids["A"], "text": '{"keys": {{ links|list|tojson }}}'}
        [request] = requests_on((await c.client.post("/ui/playground", data=form)).text)
    assert request.endswith('"keys": []\n}')


async def test_a_template_error_names_the_file_and_line(c):
    ids = await sent(c)
    await c.login(c.token("read", name="viewer"))
    page = await c.page(f"/ui/playground?target=ok&id={ids['A']}")
    form = {"csrf": csrf(page), "target": "ok", "id": ids["A"], "template": "body.json.j2"}
    r = await c.client.post("/ui/playground", data={**form, "text": '{\n"a": 1,\n"b": {{ finding.no_such_field }}\n}'})
    assert re.search(r"body\.json\.j2:3: .*no_such_field", problem_on(r.text))
    r = await c.client.post("/ui/playground", data={**form, "text": "{\n\n{% if %}\n}"})
    assert re.search(r"body\.json\.j2:3: ", problem_on(r.text))


async def test_the_playground_never_shows_a_secret(c):
    ids = await sent(c)
    await c.login(c.token("read", name="viewer"))
    page = await c.page(f"/ui/playground?target=dead&id={ids['A']}")
    text = ('{"target": {{ target|tojson }}, "again": {{ target.headers.authorization|default("")|tojson }}, '
            '"secret": {{ target.secret|default("")|tojson }}}')
    r = await c.client.post("/ui/playground", data={"csrf": csrf(page), "target": "dead", "id": ids["A"],
                                                    "template": "body.json.j2", "text": text})
    [request] = requests_on(r.text)
    assert '"target": {' in request
    assert not [s for s in (BEARER, OUT_SECRET, OUT_SECRET.removeprefix("whsec_"), SESSION_KEY) if s in r.text]


async def test_tokens_are_created_once_listed_and_revoked_by_an_admin_and_audited(c):
    await c.login(c.token("admin"))
    page = await c.page("/ui/tokens")
    r = await c.client.post("/ui/tokens", data={"csrf": csrf(page), "name": "ci", "scope_read": "1",
                                                "expires_days": "30"})
    assert r.status_code == 201
    [made] = re.findall(r'<pre class="token">(fh_\w+_[\w-]+)</pre>', r.text)
    row, _ = tokens.check(c.hub.store.conn, made, c.hub.clock())
    assert row is not None and row["name"] == "ci" and row["scopes"] == ["read"] and row["expires_at"]
    [audit] = c.audit("console.tokens.create")
    assert audit["actor"].startswith("token:ops") and audit["detail"]["after"]["id"] == row["id"]
    assert made not in str(audit) and made not in await c.page("/ui/tokens")  # shown once, never again
    assert (await c.client.post("/ui/tokens", data={"csrf": csrf(page), "name": "x"})).status_code == 400
    r = await c.client.post(f"/ui/tokens/{row['id']}/revoke", data={"csrf": "forged"})
    assert r.status_code == 403 and tokens.check(c.hub.store.conn, made, c.hub.clock())[0] is not None
    r = await c.client.post(f"/ui/tokens/{row['id']}/revoke", data={"csrf": csrf(page)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/tokens?done=revoke"
    assert tokens.check(c.hub.store.conn, made, c.hub.clock()) == (None, "token_revoked")
    [audit] = c.audit("console.tokens.revoke")
    assert audit["target"] == row["id"] and audit["detail"]["before"]["revoked_at"] is None
    assert (await c.client.post(f"/ui/tokens/{row['id']}/revoke", data={"csrf": csrf(page)})).status_code == 409


async def test_a_read_only_token_cannot_see_or_change_tokens(c):
    admin = c.token("admin")
    await c.login(c.token("read", name="viewer"))
    home = await c.page("/ui/")
    assert "/ui/tokens" not in home and "/ui/playground" in home
    assert "admin scope" in await c.page("/ui/tokens", 403)
    r = await c.client.post("/ui/tokens", data={"csrf": csrf(home), "name": "x", "scope_admin": "1"})
    assert r.status_code == 403 and len(c.hub.store.conn.execute("SELECT id FROM api_tokens").fetchall()) == 2
    r = await c.client.post(f"/ui/tokens/{tokens.token_id(admin)}/revoke", data={"csrf": csrf(home)})
    assert r.status_code == 403 and tokens.check(c.hub.store.conn, admin, c.hub.clock())[0] is not None
    assert not c.audit("console.tokens.create") and not c.audit("console.tokens.revoke")


def table(page: str) -> str:
    return page.split('<table class="list">', 1)[1].split("</table>", 1)[0]


async def test_the_audit_log_pages_and_filters(c):
    for n in range(3):
        await c.login(c.token("read", name=f"viewer{n}"))
    page = await c.page("/ui/audit?action=console.login&limit=2")
    assert table(page).count("console.login") == 2 and "viewer2" in table(page) and "viewer0" not in table(page)
    nxt = re.search(r'href="\?([^"]*)" rel="next"', page)
    assert nxt and "viewer0" in table(await c.page("/ui/audit?" + html.unescape(nxt.group(1))))
    only = table(await c.page("/ui/audit?actor=viewer1"))
    assert "viewer1" in only and "viewer2" not in only and "viewer0" not in only
    assert "unknown parameter" in await c.page("/ui/audit?nope=1", 400)


def test_a_secret_a_connector_puts_outside_a_secret_header_is_masked_too():
    """A connector may put a secret where no header mask reaches (a query parameter, a body field): the playground
    replaces every secret value of the target's config, wherever it appears."""

    class Leaky(WebhookConnector):
        def render(self, item: Item) -> list[Outbound]:
            [out] = super().render(item)
            key = self.config.secret.get_secret_value() if self.config.secret else ""
            bearer = self.config.headers["authorization"]  # a secret header's value, though not a SecretStr
            return [replace(out, url=f"{out.url}?key={key}", body=out.body + f" {key} {bearer}".encode())]

    config = WebhookConfig.model_validate({"type": "webhook", "url": "http://leak.test/hook", "secret": OUT_SECRET,
                                           "headers": {"authorization": f"Bearer {BEARER}"}})
    mapping = load_mapping("webhook", BUILTIN_ROOT / "webhook", WebhookConnector.payloads)
    example = example_from("preview", orjson.loads((BUILTIN_ROOT / "webhook/examples/created.finding.json")
                                                   .read_bytes()))
    [out] = playground.render(Leaky("leaky", config, mapping), mapping, example).requests
    assert out["url"] == "http://leak.test/hook?key=********" and out["body"].endswith(" ******** ********")
    assert OUT_SECRET not in str(out) and BEARER not in str(out)
