"""The linear connector against a fake Linear that validates every GraphQL document with Linear's schema:
directly (render, deliver, classify, read_status) and end to end through a real in-process Hub
(lifecycle, lost create answers, humans closing issues, signed Linear webhooks, bad credentials, 429)."""

from __future__ import annotations

import re
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import graphql
import httpx
import orjson
import pytest
from click.testing import CliRunner

from connectors.linear import CLOSED, COMMENTS, ISSUES, LinearConfig, LinearConnector, LinearError, client_id
from hub.cli import main
from hub.connector import Item, Outbound, Outcome, Ref, Verdict
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store import findings as finding_rows
from tests.fakes.linear import (
    API_KEY,
    FULL_SCHEMA,
    LABEL,
    OAUTH_TOKEN,
    SUBSET_SCHEMA,
    TEAM,
    WEBHOOK_SECRET,
    FakeLinear,
    LoseAnswer,
    extract_subset,
    schema,
)
from tests.support import HubHarness, deliveries_of, events_of, findings_of, scanner_source, write_config

EXAMPLES = BUILTIN_ROOT / "linear" / "examples"
FINDING = orjson.loads((EXAMPLES / "created.finding.json").read_bytes())
MAPPING = load_mapping("linear", BUILTIN_ROOT / "linear", LinearConnector.payloads)


def connector(name: str = "secops", **cfg: Any) -> LinearConnector:
    config = LinearConfig.model_validate({"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM, **cfg})
    return LinearConnector(name, config, MAPPING)


def item(kind: str, ref: Ref | None = None, attempt: int = 1, key: str = "k1", **changes: Any) -> Item:
    finding = {**FINDING, "status": "resolved" if kind == "finding.resolved" else "open"}
    return Item("dlv_1", kind, key, "route", "secops", finding, None, changes, ref or Ref(FINDING["id"], "secops"),
                attempt)


def linked(v: Verdict) -> Ref:
    return Ref(FINDING["id"], "secops", v.remote_id, v.remote_url, v.remote_status, "linked")


async def run(fake: FakeLinear, c: LinearConnector, *items: Item, transport: Any = None) -> list[Verdict]:
    async with c.client(transport or httpx.ASGITransport(app=fake.app)) as client:
        return [await c.deliver(client, i) for i in items]


def sent(fake: FakeLinear, op: str) -> list[dict[str, Any]]:
    return [r["variables"] for r in fake.requests if op in r.get("query", "")]


def ops(fake: FakeLinear) -> list[str]:
    """The root field of each request the fake received, in order."""
    return [m.group(1) if (m := re.search(r"\{\s*(\w+)", r.get("query", ""))) else "" for r in fake.requests]


# --- the connector on its own ---------------------------------------------------------------------------


async def test_create_sends_one_schema_valid_issue_create_with_a_derived_id():
    fake, c = FakeLinear(), connector(label_ids=[LABEL])
    [v] = await run(fake, c, item("finding.created"))
    [req] = fake.requests
    assert req["headers"]["authorization"] == API_KEY  # a personal key goes without "Bearer"
    assert req["headers"]["content-type"] == "application/json"
    issue_input = req["variables"]["input"]
    assert issue_input["id"] == client_id("secops", FINDING["id"]) and issue_input["teamId"] == TEAM
    assert issue_input["title"] == "[CRITICAL] End-of-life OpenSSL 1.0.2 on db-prod-02.internal"
    assert (issue_input["priority"], issue_input["labelIds"], issue_input["dueDate"]) == (1, [LABEL], "2026-11-29")
    assert "CVE-2024-21412" in issue_input["description"] and FINDING["id"] in issue_input["description"]
    [issue] = fake.issues.values()
    assert v == Verdict(Outcome.OK, "issueCreate SEC-1", remote_id=issue["id"], remote_url=issue["url"],
                        remote_status="Backlog", status=200)


def test_client_ids_are_stable_v4_shaped_and_per_target():
    a = client_id("secops", "fnd_1")
    assert a == client_id("secops", "fnd_1") != client_id("other", "fnd_1")
    assert a[14] == "4" and a[19] in "89ab"  # Linear's schema asks for "UUID v4 format"


async def test_oauth_token_is_sent_as_bearer():
    fake = FakeLinear()
    c = LinearConnector("secops", LinearConfig.model_validate(
        {"type": "linear", "auth": {"oauth_token": OAUTH_TOKEN}, "team_id": TEAM}), MAPPING)
    [v] = await run(fake, c, item("finding.created"))
    assert v.outcome is Outcome.OK and fake.requests[0]["headers"]["authorization"] == f"Bearer {OAUTH_TOKEN}"


async def test_wrong_key_is_permanent_and_names_the_setting_not_the_secret():
    fake, c = FakeLinear(), connector(auth={"api_key": "lin_api_wrong"})
    [v] = await run(fake, c, item("finding.created"))
    assert v.outcome is Outcome.PERMANENT and v.status == 401
    assert "auth.api_key of target secops" in v.reason and "lin_api_wrong" not in v.reason
    assert len(fake.requests) == 1 and not fake.issues  # no adoption lookup with a bad key


async def test_update_sends_only_changed_fields_and_a_comment_saying_what_changed():
    fake, c = FakeLinear(), connector()
    [created] = await run(fake, c, item("finding.created"))
    [v] = await run(fake, c, item("finding.updated", linked(created), key="k2",
                                  severity={"old": "high", "new": "critical"}, cvss_score={"old": 7.5, "new": 9.8}))
    assert v.outcome is Outcome.OK and v.remote_id == created.remote_id
    [update] = sent(fake, "issueUpdate")
    assert update["id"] == created.remote_id
    assert set(update["input"]) == {"title", "priority", "dueDate", "description"} and update["input"]["priority"] == 1
    [comment] = fake.comments.values()
    assert comment["issueId"] == created.remote_id and "severity: `high` → `critical`" in comment["body"]


async def test_resolve_and_reopen_move_the_state_by_type_looked_up_once():
    fake, c = FakeLinear(), connector()
    [created] = await run(fake, c, item("finding.created"))
    ref = linked(created)
    verdicts = await run(fake, c, item("finding.resolved", ref, key="k2", status={"old": "open", "new": "resolved"}),
                         item("finding.reopened", ref, key="k3", status={"old": "resolved", "new": "open"}),
                         item("finding.resolved", ref, key="k4", status={"old": "open", "new": "resolved"}))
    assert [v.remote_status for v in verdicts] == ["Done", "Todo", "Done"]
    assert [s["type"] for s in sent(fake, "workflowStates")] == ["completed", "unstarted"]  # cached after that
    assert fake.view(fake.find("SEC-1"))["state"]["type"] == "completed"
    assert len(fake.comments) == 3


async def test_configured_state_ids_skip_the_lookup():
    fake = FakeLinear()
    done = fake.state_of("canceled")["id"]
    c = connector(resolved_state_id=done)
    [created] = await run(fake, c, item("finding.created"))
    await run(fake, c, item("finding.resolved", linked(created), key="k2"))
    assert not sent(fake, "workflowStates") and fake.view(fake.find("SEC-1"))["state"]["id"] == done


async def test_a_step_for_an_unlinked_finding_creates_the_issue_first():
    fake, c = FakeLinear(), connector()
    [v] = await run(fake, c, item("finding.resolved", status={"old": "open", "new": "resolved"}))
    assert v.outcome is Outcome.OK and v.remote_status == "Done" and len(fake.issues) == 1
    assert ops(fake) == ["workflowStates", "issueCreate", "issueUpdate", "commentCreate"]
    assert sent(fake, "issueUpdate")[0]["input"] == {"stateId": fake.state_of("completed")["id"]}


async def test_a_create_whose_answer_was_lost_is_adopted_not_duplicated():
    fake, c = FakeLinear(), connector()
    async with c.client(LoseAnswer(fake.app)) as client:
        with pytest.raises(httpx.ReadError):  # the dispatcher turns this into RETRY
            await c.deliver(client, item("finding.created"))
        v = await c.deliver(client, item("finding.created", attempt=2))
    assert len(fake.issues) == 1 and v.outcome is Outcome.OK
    assert v.remote_id == client_id("secops", FINDING["id"]) and v.reason.startswith("issueCreate: adopted")


async def test_a_retried_comment_is_not_posted_twice():
    fake, c = FakeLinear(), connector()
    [created] = await run(fake, c, item("finding.created"))
    fake.script = [None, "lost"]  # the issueUpdate goes through; the comment's answer is lost
    step = item("finding.updated", linked(created), key="k2", severity={"old": "high", "new": "critical"})
    [first] = await run(fake, c, step)
    assert first.outcome is Outcome.RETRY and first.reason.startswith("commentCreate: HTTP 502")
    [again] = await run(fake, c, step)
    assert again.outcome is Outcome.OK and len(fake.comments) == 1


async def test_rate_limited_and_lock_timeout_answers_are_retried():
    fake, c = FakeLinear(), connector()
    fake.script = [("ratelimit", 400), "lock"]
    verdicts = await run(fake, c, item("finding.created"), item("finding.created"), item("finding.created", attempt=2))
    assert [v.outcome for v in verdicts] == [Outcome.RETRY, Outcome.RETRY, Outcome.OK]
    assert verdicts[0].status == 429 and 55 < (verdicts[0].retry_after or 0) <= 60  # from X-RateLimit-Requests-Reset
    assert verdicts[1].reason == "issueCreate: HTTP 200: lock timeout (lock timeout)" and len(fake.issues) == 1


async def test_graphql_errors_in_a_200_are_permanent_with_linear_message():
    fake, c = FakeLinear(), connector(team_id="7c6f0000-0000-4000-8000-000000000000")
    [v] = await run(fake, c, item("finding.created"))
    assert v.outcome is Outcome.PERMANENT and v.status == 200
    assert v.reason == "issueCreate: HTTP 200: Could not find referenced Team. (invalid input)"


async def test_a_team_without_the_state_type_says_what_to_set():
    def vendor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"workflowStates": {"nodes": []}}})

    c = connector()
    async with c.client(httpx.MockTransport(vendor)) as client:
        v = await c.deliver(client, item("finding.resolved", Ref(FINDING["id"], "secops", "x", None, None, "linked")))
    assert v.outcome is Outcome.PERMANENT and "set resolved_state_id" in v.reason


def response(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers) if body is not None else \
        httpx.Response(status, text="upstream says no", headers=headers)


def errors(kind: str, code: str, message: str = "boom") -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"type": kind, "code": code}}]}


@pytest.mark.parametrize("answer, outcome, retry_after", [
    (response(429, errors("ratelimited", "RATELIMITED"), **{"retry-after": "7"}), Outcome.RETRY, 7.0),
    (response(400, errors("ratelimited", "RATELIMITED")), Outcome.RETRY, None),
    (response(200, errors("lock timeout", "LOCK_TIMEOUT")), Outcome.RETRY, None),
    (response(503), Outcome.RETRY, None),
    (response(502, {"error": "bad gateway"}), Outcome.RETRY, None),
    (response(400), Outcome.PERMANENT, None),
    (response(400, errors("graphql error", "GRAPHQL_VALIDATION_FAILED", "Unknown field"), ), Outcome.PERMANENT, None),
    (response(200, errors("invalid input", "INPUT_ERROR")), Outcome.PERMANENT, None),
    (response(200, {"data": {"issueCreate": {"success": True}}}), Outcome.OK, None),
])
def test_classify(answer, outcome, retry_after):
    verdict = connector().classify(answer)
    assert verdict.outcome is outcome
    assert verdict.retry_after == retry_after


def test_rate_limited_answers_pause_the_target_and_use_the_reset_header():
    reset = str(int((time.time() + 30) * 1000))
    answer = response(400, errors("ratelimited", "RATELIMITED"), **{"x-ratelimit-requests-reset": reset})
    v = connector().classify(answer)
    assert v.outcome is Outcome.RETRY and v.status == 429 and 25 < (v.retry_after or 0) <= 30


@pytest.mark.parametrize("answer", [response(401, errors("authentication error", "AUTHENTICATION_ERROR")),
                                    response(403),
                                    response(400, errors("authentication error", "AUTHENTICATION_ERROR")),
                                    response(200, errors("forbidden", "FORBIDDEN"))])
def test_auth_failures_are_permanent_and_name_the_credential(answer):
    v = connector().classify(answer)
    assert v.outcome is Outcome.PERMANENT and "check the Linear API key (auth.api_key of target secops)" in v.reason


async def test_success_false_is_permanent():
    def vendor(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"issueCreate": {"success": False, "issue": None}}})

    [v] = await run(FakeLinear(), connector(), item("finding.created"), transport=httpx.MockTransport(vendor))
    assert v.outcome is Outcome.PERMANENT and "issueCreate did not succeed" in v.reason


async def test_read_status_batches_and_decides_closed_by_state_type():
    fake, c = FakeLinear(), connector()
    refs = []
    for n in range(4):
        finding = {**FINDING, "id": f"fnd_{n}"}
        [v] = await run(fake, c, Item(f"d{n}", "finding.created", f"k{n}", "r", "secops", finding, None, {},
                                      Ref(f"fnd_{n}", "secops")))
        refs.append(Ref(f"fnd_{n}", "secops", v.remote_id, v.remote_url, v.remote_status, "linked"))
    fake.close("SEC-1", "completed")
    fake.close("SEC-2", "canceled")
    fake.close("SEC-3", "started")
    fake.issues.pop(refs[3].remote_id)  # deleted in Linear: left out
    before = len(fake.requests)
    async with c.client(httpx.ASGITransport(app=fake.app)) as client:
        statuses = await c.read_status(client, refs)
    assert len(fake.requests) == before + 1 and c.status_batch == 50
    assert [(s.status, s.closed) for s in statuses] == [("Done", True), ("Canceled", True), ("In Progress", False)]
    assert {"completed", "canceled"} == CLOSED
    fake.script = ["ratelimit"]
    async with c.client(httpx.ASGITransport(app=fake.app)) as client:
        with pytest.raises(LinearError, match="rate limited"):
            await c.read_status(client, refs)


# --- config, render, schema ------------------------------------------------------------------------------


def target_yaml(tmp_path: Path, **target: Any) -> Path:
    data = {"storage": {"path": str(tmp_path / "hub.db")}, "sources": {},
            "targets": {"secops": {"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM, **target}}}
    return write_config(tmp_path / "hub.yaml", data)


def test_unknown_keys_and_bad_auth_are_config_problems(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(target_yaml(tmp_path, team=TEAM, resolved_state="x"))
    text = str(exc.value)
    assert 'targets.secops.team: unknown key; did you mean "team_id"?' in text
    assert 'targets.secops.resolved_state: unknown key; did you mean "resolved_state_id"?' in text
    with pytest.raises(ConfigError, match=re.escape("targets.secops.auth: set exactly one of api_key")):
        load_config(target_yaml(tmp_path, auth={"api_key": API_KEY, "oauth_token": OAUTH_TOKEN}))
    with pytest.raises(ConfigError, match=re.escape("targets.secops.auth: set exactly one of api_key")):
        load_config(target_yaml(tmp_path, auth={}))
    with pytest.raises(ConfigError, match=r'targets.secops.auth.apikey: unknown key; did you mean "api_key"\?'):
        load_config(target_yaml(tmp_path, auth={"apikey": API_KEY}))


def test_secrets_stay_out_of_reprs_templates_and_render(tmp_path):
    c = connector()
    assert API_KEY not in repr(c.config) and API_KEY not in str(c.context(item("finding.created")))
    path = target_yaml(tmp_path)
    finding = tmp_path / "f.json"
    finding.write_text(orjson.dumps({"kind": "finding.resolved", "changes": {}, "finding": FINDING}).decode())
    result = CliRunner().invoke(main, ["render", "--config", str(path), "--target", "secops", "--finding", str(finding),
                                       "--remote-id", "issue-uuid"])
    assert result.exit_code == 0, result.output
    assert API_KEY not in result.output and "authorization: ********" in result.output
    assert "POST https://api.linear.app/graphql" in result.output
    assert result.output.index("workflowStates") < result.output.index("issueUpdate")  # the lookup is shown first
    assert "from the lookup above" in result.output and "commentCreate" in result.output


def documents(c: LinearConnector) -> list[Outbound]:
    ref = Ref(FINDING["id"], "secops", "issue-uuid", None, None, "linked")
    outs = [o for kind in sorted(c.kinds) for o in c.render(item(kind, ref)) + c.render(item(kind))]
    return outs + [c.request(q, {}, "x") for q in (ISSUES, COMMENTS)]


@pytest.mark.slow
def test_every_document_is_valid_against_linear_schema_and_the_carried_subset():
    subset = graphql.build_schema(SUBSET_SCHEMA.read_text())
    schemas = [schema(), subset]
    for out in documents(connector()):
        query = orjson.loads(out.body)["query"]
        for s in schemas:
            assert graphql.validate(s, graphql.parse(query)) == [], query


@pytest.mark.slow
def test_the_carried_subset_is_a_fresh_cut_of_linear_schema():
    assert SUBSET_SCHEMA.read_text() == extract_subset(FULL_SCHEMA.read_text()), \
        "run: python -c 'from tests.fakes.linear import *; SUBSET_SCHEMA.write_text(extract_subset(" \
        "FULL_SCHEMA.read_text()))'"


async def test_the_fake_refuses_what_linear_refuses():
    fake = FakeLinear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url="http://linear.test") as client:
        async def post(query: str, variables: Any = None, auth: str = API_KEY) -> httpx.Response:
            return await client.post("/graphql", json={"query": query, "variables": variables or {}},
                                     headers={"authorization": auth})

        create = "mutation($input: IssueCreateInput!) { issueCreate(input: $input) { success } }"
        assert (await post(create, {"input": {"title": "t", "teamId": TEAM}}, f"Bearer {API_KEY}")).status_code == 401
        bad = await post("mutation { issueCreate(input: {title: \"t\"}) { success } }")
        assert bad.status_code == 400 and "teamId" in bad.json()["errors"][0]["message"]  # required by the schema
        unknown = await post("{ issues(first: 1) { nodes { severity } } }")
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        no_title = await post(create, {"input": {"teamId": TEAM}})
        assert no_title.status_code == 200 and no_title.json()["data"] is None
        assert no_title.json()["errors"][0]["extensions"]["type"] == "invalid input"
        high = await post(create, {"input": {"teamId": TEAM, "title": "t", "priority": 7}})
        assert "priority" in high.json()["errors"][0]["message"]
        ok = await post(create, {"input": {"teamId": TEAM, "title": "t"}})
        assert ok.json() == {"data": {"issueCreate": {"success": True}}}
        assert ok.headers["x-ratelimit-requests-limit"] == "1500"


# --- end to end through the Hub --------------------------------------------------------------------------


def hub_config(tmp_path: Path, **target: Any) -> dict[str, Any]:
    kinds = ["finding.created", "finding.updated", "finding.resolved", "finding.reopened"]
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {
            "scanner": scanner_source({"title": "item.title", "severity": "item.severity", "tool_id": "item.id",
                                       "asset.identifier": "item.host"}, status="item.state"),
            "linear_hooks": {"verify": {"scheme": "hmac-sha256", "header": "Linear-Signature",
                                        "secrets": [WEBHOOK_SECRET]},
                             "adapter": "linear", "options": {"target": "secops"}},
        },
        "routes": [{"name": "all", "on": kinds, "to": ["secops", "archive"]}],
        "targets": {
            "secops": {"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM, "url": "http://linear.test",
                       "rate_limit": {"per_sec": 1000}, "retry": {"schedule_secs": [0.05] * 5, "jitter": 0},
                       **target},
            "archive": {"type": "file", "path": "out/archive.ndjson"},
        },
        "pipeline": {"safety_net_secs": 0.5},
    }


class Harness(HubHarness):
    def deliveries(self, target: str = "secops") -> list[tuple[str, str, int]]:
        return [(d["kind"], d["state"], d["attempts"]) for d in deliveries_of(self.hub.store.conn, target=target)]

    def finding(self) -> dict[str, Any]:
        [found] = findings_of(self.hub.store.conn)
        return {"id": found.id, "status": found.status}


def harness(tmp_path: Path, data: dict[str, Any], fake: FakeLinear,
            transport: httpx.AsyncBaseTransport | None = None) -> AbstractAsyncContextManager[Harness]:
    transports = {"secops": transport or httpx.ASGITransport(app=fake.app)}
    return Harness.running(tmp_path, data, transports, scheduler=False)


def finding(**kw: Any) -> dict[str, Any]:
    return {"id": "F-1", "title": "SQL injection in /login", "severity": "high", "host": "web-1", "state": "open", **kw}


@pytest.mark.slow
async def test_lifecycle_create_update_resolve_reopen(tmp_path):
    fake = FakeLinear()
    async with harness(tmp_path, hub_config(tmp_path), fake) as h:
        steps = (finding(), finding(severity="critical"), finding(state="fixed"), finding(severity="critical"))
        for n, step in enumerate(steps, 1):
            await h.send([step])
            await h.until(lambda n=n: len(h.deliveries()) == n and h.settled())
        assert h.deliveries() == [("finding.created", "done", 1), ("finding.updated", "done", 1),
                                  ("finding.resolved", "done", 1), ("finding.reopened", "done", 1)]
        [issue] = fake.issues.values()
        assert issue["title"] == "[CRITICAL] SQL injection in /login on web-1" and issue["priority"] == 1
        assert fake.view(issue)["state"]["type"] == "unstarted"
        bodies = [c["body"] for c in fake.comments.values()]
        assert [b.split("**")[1] for b in bodies] == ["Finding updated", "Finding resolved", "Finding reopened"]
        ref = finding_rows.ref(h.hub.store.conn, h.finding()["id"], "secops")
        assert ref is not None and (ref.state, ref.remote_id, ref.url, ref.remote_status) == \
            ("linked", issue["id"], issue["url"], "Todo")


@pytest.mark.slow
async def test_lost_create_answer_is_retried_into_exactly_one_issue(tmp_path):
    fake = FakeLinear()
    fake.script = ["lost"]
    async with harness(tmp_path, hub_config(tmp_path), fake) as h:
        await h.send([finding()])
        await h.until(h.settled)
        assert h.deliveries() == [("finding.created", "done", 2)]
    (tmp_path / "again").mkdir()
    fake2 = FakeLinear()
    async with harness(tmp_path / "again", hub_config(tmp_path / "again"), fake2, LoseAnswer(fake2.app)) as h:
        await h.send([finding()])
        await h.until(h.settled)
        assert h.deliveries() == [("finding.created", "done", 2)]
    assert len(fake.issues) == 1 and len(fake2.issues) == 1


@pytest.mark.slow
async def test_a_human_closing_the_issue_resolves_the_finding_without_echo(tmp_path):
    fake = FakeLinear()
    async with harness(tmp_path, hub_config(tmp_path), fake) as h:
        await h.send([finding()])
        await h.until(h.settled)
        fake.close("SEC-1", "completed")
        report = await h.hub.syncs["secops"].run()
        assert (report.checked, report.resolved) == (1, 1)
        await h.until(lambda: h.settled() and len(h.deliveries("archive")) == 2)
        assert h.finding()["status"] == "resolved"
        last = finding_rows.history(h.hub.store.conn, h.finding()["id"])[-1]
        assert last["event_type"] == "finding.resolved" and last["changes"]["resolved_by"] == "secops"
        assert h.deliveries() == [("finding.created", "done", 1)]  # no echo back to Linear
        assert [k for k, _, _ in h.deliveries("archive")] == ["finding.created", "finding.resolved"]
        assert not sent(fake, "issueUpdate")


@pytest.mark.slow
async def test_a_signed_linear_webhook_resolves_the_finding_at_once_without_echo(tmp_path):
    fake = FakeLinear()
    async with harness(tmp_path, hub_config(tmp_path), fake) as h:
        await h.send([finding()])
        await h.until(h.settled)
        issue = fake.close("SEC-1", "canceled")
        stale, stale_headers = fake.webhook(issue["id"], timestamp_ms=int((time.time() - 120) * 1000))
        r = await h.client.post("/hooks/linear_hooks", content=stale, headers=stale_headers)
        assert r.status_code == 202  # verified and stored, then refused by the adapter as a replay
        forged, headers = fake.webhook(issue["id"], secret="not-the-secret")
        assert (await h.client.post("/hooks/linear_hooks", content=forged, headers=headers)).status_code == 401
        body, headers = fake.webhook(issue["id"])
        assert (await h.client.post("/hooks/linear_hooks", content=body, headers=headers)).status_code == 202
        await h.until(lambda: h.finding()["status"] == "resolved")
        await h.until(lambda: h.settled() and len(h.deliveries("archive")) == 2)
        [failed] = events_of(h.hub.store.conn, state="failed")
        error = failed["error"]
        assert "webhookTimestamp" in error and "replay" in error
        last = finding_rows.history(h.hub.store.conn, h.finding()["id"])[-1]
        assert last["changes"]["resolved_by"] == "secops" and last["changes"]["remote_status"] == "Canceled"
        assert h.deliveries() == [("finding.created", "done", 1)]  # no echo
        assert not sent(fake, "issueUpdate")


@pytest.mark.slow
async def test_wrong_credentials_dead_letter_with_a_clear_reason(tmp_path):
    fake = FakeLinear()
    data = hub_config(tmp_path, auth={"api_key": "lin_api_revoked"})
    async with harness(tmp_path, data, fake) as h:
        await h.send([finding()])
        await h.until(h.settled)
        assert h.deliveries() == [("finding.created", "dead", 1)]
        result = CliRunner().invoke(main, ["deliveries", "dead", "--config", str(tmp_path / "hub.yaml"), "--json"])
        [row] = [orjson.loads(line) for line in result.output.splitlines()]
        assert row["target"] == "secops"
        assert "check the Linear API key (auth.api_key of target secops" in row["last_error"]
        assert "lin_api_revoked" not in result.output
        assert not fake.issues


@pytest.mark.slow
async def test_429_with_retry_after_is_honoured_then_succeeds(tmp_path):
    fake = FakeLinear()
    fake.script = ["ratelimit"]  # Retry-After: 1
    async with harness(tmp_path, hub_config(tmp_path), fake) as h:
        started = time.monotonic()
        await h.send([finding()])
        await h.until(h.settled)
        assert h.deliveries() == [("finding.created", "done", 2)] and time.monotonic() - started >= 0.9
        [dead_try, ok] = outbox.get(h.hub.store.conn, outbox.listing(h.hub.store.conn, target="secops")[0]["id"]
                                    )["attempt_log"]
        assert dead_try["outcome"] == "retry" and ok["outcome"] == "ok"
        assert len(fake.issues) == 1


@pytest.fixture(autouse=True)
def _quiet_scheduler_logs(caplog):
    caplog.set_level("WARNING", logger="apscheduler")
