"""monday connector: against the fake monday API (graphql-core on the real 2026-10 schema) directly,
then end to end through a real in-process Hub (create, update, resolve, reopen, lost create answers,
a human closing the item, a wrong token, 429 + Retry-After)."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import graphql
import httpx
import orjson
import pytest
from click.testing import CliRunner

from connectors import monday as mod
from connectors.monday import MondayConfig, MondayConnector
from hub.cli import main
from hub.connector import Item, Outcome, Ref
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.models import Finding
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store import findings as finding_rows
from tests.fakes.monday import (
    SUBSET_SCHEMA,
    Flaky,
    complexity_error,
    daily_limit_error,
    fake_monday,
    schema,
    transport_429,
)
from tests.support import HubHarness, deliveries_of, scanner_source, write_config

TOKEN = "monday-test-token"
EXAMPLES = BUILTIN_ROOT / "monday" / "examples"


def example(case: str) -> dict[str, Any]:
    doc = orjson.loads((EXAMPLES / f"{case}.finding.json").read_bytes())
    wrapped = "finding" in doc and "title" not in doc
    finding = Finding.model_validate(doc["finding"] if wrapped else doc).model_dump(mode="json")
    return {"finding": finding, "kind": doc.get("kind", "finding.created") if wrapped else "finding.created",
            "changes": doc.get("changes", {}) if wrapped else {}}


def connector(**cfg: Any) -> MondayConnector:
    config = MondayConfig.model_validate({"type": "monday", "url": "http://monday.test", "auth": {"token": TOKEN},
                                          "board_id": 1234567890, **cfg})
    return MondayConnector("mon", config, load_mapping("monday", BUILTIN_ROOT / "monday", MondayConnector.payloads))


def item(kind: str, finding: dict[str, Any], ref: Ref | None = None, attempt: int = 1,
         changes: dict[str, Any] | None = None) -> Item:
    ref = ref or Ref(finding["id"], "mon")
    return Item(f"dlv_{kind}", kind, f"key-{kind}", "all", "mon", finding, None, changes or {}, ref, attempt)


def linked(remote_id: str, finding: dict[str, Any]) -> Ref:
    return Ref(finding["id"], "mon", remote_id, None, None, "linked")


async def deliver(c: MondayConnector, transport: httpx.AsyncBaseTransport, *items: Item) -> list[Any]:
    async with c.client(transport) as client:
        return [await c.deliver(client, i) for i in items]


def answer(status: int, doc: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=doc, headers=headers, request=httpx.Request("POST", "http://monday.test/v2"))


# --- the connector against the fake -------------------------------------------------------------------------


@pytest.mark.slow
async def test_create_sends_a_json_string_with_pinned_headers_and_the_marker():
    app, c, f = fake_monday(), connector(group_id="new_group"), example("created")["finding"]
    [verdict] = await deliver(c, httpx.ASGITransport(app=app), item("finding.created", f))
    state = app.state.monday
    assert verdict.outcome is Outcome.OK and verdict.remote_status == "Working on it"
    [(op, variables)] = state.calls
    assert op == "create_item" and isinstance(variables["cols"], str)  # JSON-encoded string, not an object
    assert variables["labels"] is False and variables["group"] == "new_group"
    made = state.items[verdict.remote_id]
    assert verdict.remote_url == made["url"] and made["group"] == "new_group"
    assert made["values"]["name"] == "[CRITICAL] End-of-life OpenSSL 1.0.2 on db-prod-02.internal"
    assert made["values"]["text"] == f["id"] and made["values"]["status"] == "Working on it"
    assert made["values"]["priority"] == "Critical" and made["values"]["date4"] == "2026-11-29"
    assert made["values"]["link"]["text"] == "CVE-2024-21412"
    assert "Upgrade to OpenSSL 3.0" in made["values"]["long_text"]
    [out] = c.render(item("finding.created", f))
    assert out.url == "http://monday.test/v2" and out.headers["authorization"] == TOKEN
    assert out.headers["api-version"] == "2026-10" and out.masked_headers()["authorization"] == "********"


@pytest.mark.slow
async def test_lifecycle_on_a_linked_item():
    app, c = fake_monday(), connector()
    f, upd = example("created")["finding"], example("updated")
    [created] = await deliver(c, httpx.ASGITransport(app=app), item("finding.created", f))
    ref, state = linked(created.remote_id, f), app.state.monday
    state.items[created.remote_id]["values"]["priority"] = "Low"  # a human triaged it; no severity change: kept
    results = await deliver(c, httpx.ASGITransport(app=app),
                            item("finding.updated", upd["finding"], ref,
                                 changes={"cvss_score": {"old": 7.5, "new": 9.8}}),
                            item("finding.resolved", f, ref),
                            item("finding.reopened", example("reopened")["finding"], ref),
                            item("finding.sla_breached", f, ref))
    assert [v.outcome for v in results] == [Outcome.OK] * 4
    assert [v.remote_status for v in results] == [None, "Done", "Working on it", None]
    assert state.ops() == ["create_item", "change_multiple_column_values", "create_update",
                           "change_multiple_column_values", "create_update", "change_multiple_column_values",
                           "create_update", "create_update"]
    values = state.items[created.remote_id]["values"]
    assert values["status"] == "Working on it" and values["date4"] == "2026-12-09"  # reopened: every column
    assert values["priority"] == "Critical"
    bodies = [u["body"] for u in state.updates]
    assert "cvss_score: 7.5 &rarr; 9.8" in bodies[0] and "resolved" in bodies[1] and "reopened" in bodies[2]
    assert "SLA breached" in bodies[3] and len(state.items) == 1
    state.delete(created.remote_id)  # a person deleted the item: the hub does not recreate it
    [gone] = await deliver(c, httpx.ASGITransport(app=app), item("finding.resolved", f, ref))
    assert gone.outcome is Outcome.PERMANENT and "InvalidItemIdException" in gone.reason and len(state.items) == 1


@pytest.mark.slow
async def test_update_sends_only_the_columns_its_changes_touch():
    app, c, f = fake_monday(), connector(), example("created")["finding"]
    [created] = await deliver(c, httpx.ASGITransport(app=app), item("finding.created", f))
    state = app.state.monday
    state.items[created.remote_id]["values"]["priority"] = "Low"
    await deliver(c, httpx.ASGITransport(app=app), item("finding.updated", f, linked(created.remote_id, f),
                                                        changes={"description": {"old": "a", "new": "b"}}))
    cols = orjson.loads(state.calls[1][1]["cols"])
    assert set(cols) == {"long_text"} and state.items[created.remote_id]["values"]["priority"] == "Low"


async def test_unlinked_steps_create_the_item_first():
    app, c, f = fake_monday(), connector(), example("created")["finding"]
    [resolved] = await deliver(c, httpx.ASGITransport(app=app), item("finding.resolved", f))
    state = app.state.monday
    assert resolved.outcome is Outcome.OK and resolved.remote_status == "Done"
    assert state.ops() == ["items_page_by_column_values", "create_item", "create_update"]
    assert state.items[resolved.remote_id]["values"]["status"] == "Done"
    assert state.updates[0]["item_id"] == resolved.remote_id
    preview = [orjson.loads(o.body)["query"].split("(")[0] for o in c.render(item("finding.updated", f))]
    assert preview == ["mutation CreateItem", "mutation Comment"]


async def test_retried_create_adopts_the_item_a_lost_answer_made():
    app, c, f = fake_monday(), connector(), example("created")["finding"]
    flaky = Flaky(app, {"create_item": ["lost"]})
    with pytest.raises(httpx.ReadError):  # the dispatcher turns this into RETRY
        await deliver(c, flaky, item("finding.created", f))
    [again] = await deliver(c, flaky, item("finding.created", f, attempt=2))
    state = app.state.monday
    assert again.outcome is Outcome.OK and len(state.items) == 1 and again.remote_id in state.items
    assert flaky.seen == ["create_item", "items_page_by_column_values", "change_multiple_column_values"]
    assert orjson.loads(state.calls[2][1]["cols"])["name"].startswith("[CRITICAL]")


async def test_a_failed_comment_after_a_create_is_retried_without_a_second_item():
    app, c, f = fake_monday(), connector(), example("created")["finding"]
    flaky = Flaky(app, {"create_update": [(500, {}, {"errors": [{"message": "Internal server error",
                                                                  "extensions": {"status_code": 500}}]})]})
    [first] = await deliver(c, flaky, item("finding.resolved", f))
    [second] = await deliver(c, flaky, item("finding.resolved", f, attempt=2))
    state = app.state.monday
    assert first.outcome is Outcome.RETRY and second.outcome is Outcome.OK and len(state.items) == 1
    assert flaky.seen == ["items_page_by_column_values", "create_item", "create_update",
                          "items_page_by_column_values", "change_multiple_column_values", "create_update"]
    assert state.items[second.remote_id]["values"]["status"] == "Done" and len(state.updates) == 1


async def test_long_description_is_cut_to_the_long_text_limit():
    app, c, f = fake_monday(), connector(), example("long")["finding"]
    [v] = await deliver(c, httpx.ASGITransport(app=app), item("finding.created", f))
    text = app.state.monday.items[v.remote_id]["values"]["long_text"]
    assert len(text) == 2000 and "[... cut to fit monday's" in text and text.endswith(f["id"])
    c.mapping.vars["max_description_chars"] = 9000  # an ops edit that forgets the limit: the connector cuts
    [v] = await deliver(c, httpx.ASGITransport(app=app), item("finding.created", dict(f, id="fnd_other")))
    text = app.state.monday.items[v.remote_id]["values"]["long_text"]
    assert len(text) == 2000 and text.endswith(mod.CUT)


@pytest.mark.slow
async def test_fake_rejects_objects_unknown_columns_and_labels():
    app = fake_monday()
    query = "mutation($b: ID!, $c: JSON) { create_item(board_id: $b, item_name: \"x\", column_values: $c) { id } }"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://monday.test") as client:
        headers = {"authorization": TOKEN, "api-version": "2026-10"}
        r = await client.post("/v2", json={"query": query, "variables": {"b": "1234567890", "c": {"text": "x"}}},
                              headers=headers)
        assert r.status_code == 200 and r.json()["errors"][0]["extensions"]["code"] == "InvalidArgumentException"
        r = await client.post("/v2", json={"query": "{ items { id nme } }"}, headers=headers)
        assert "Cannot query field 'nme'" in r.json()["errors"][0]["message"]
        assert connector().classify(r).outcome is Outcome.PERMANENT
        r = await client.post("/v2", json={"query": "{ items { id } }"}, headers={"authorization": TOKEN})
        assert r.status_code == 400  # API-Version not pinned
    f = example("created")["finding"]
    [bad_column] = await deliver(connector(columns={"priority": "priority_mkx1"}), httpx.ASGITransport(app=app),
                                 item("finding.created", f))
    assert bad_column.outcome is Outcome.PERMANENT and "InvalidColumnIdException" in bad_column.reason
    assert "check board_id 1234567890" in bad_column.reason
    [bad_label] = await deliver(connector(status_labels={"open": "Triage"}), httpx.ASGITransport(app=app),
                                item("finding.created", f))
    assert bad_label.outcome is Outcome.PERMANENT and "ColumnValueException" in bad_label.reason
    [added] = await deliver(connector(status_labels={"open": "Triage"}, create_labels_if_missing=True),
                            httpx.ASGITransport(app=app), item("finding.created", f))
    assert added.outcome is Outcome.OK and "Triage" in app.state.monday.boards["1234567890"].labels["status"].values()


@pytest.mark.slow
async def test_read_status_by_state_category_in_batches():
    app, c = fake_monday(), connector()
    f = example("created")["finding"]
    made = await deliver(c, httpx.ASGITransport(app=app),
                         *[item("finding.created", dict(f, id=f"fnd_{n:03}")) for n in range(60)])
    ids = [v.remote_id for v in made]
    state = app.state.monday
    state.set_status(ids[0], "Accepted risk")  # a done label that is not status_labels.resolved
    state.set_status(ids[1], "Stuck")
    state.set_status(ids[2], "Done")
    state.archive(ids[3])
    refs = [linked(i, f) for i in ids] + [linked("1", f)]  # 1: gone for good, left out
    transport = Flaky(app)
    async with c.client(transport) as client:
        statuses = await c.read_status(client, refs)
    assert transport.seen == ["items", "items"] and len(statuses) == 60  # 50 + 11 ids, unknown one left out
    by_id = {s.remote_id: s for s in statuses}
    assert (by_id[ids[0]].status, by_id[ids[0]].closed) == ("Accepted risk", True)
    assert (by_id[ids[1]].status, by_id[ids[1]].closed) == ("Stuck", False)
    assert by_id[ids[2]].closed and not by_id[ids[5]].closed and by_id[ids[5]].status == "Working on it"
    assert (by_id[ids[3]].status, by_id[ids[3]].closed) == ("archived", False)
    async with connector(archived_is_closed=True).client(transport) as client:
        [archived] = await connector(archived_is_closed=True).read_status(client, [linked(ids[3], f)])
    assert archived.closed
    async with c.client(Flaky(app, {"items": [complexity_error(3)]})) as client:
        with pytest.raises(mod.MondayError, match="COMPLEXITY_BUDGET_EXHAUSTED"):
            await c.read_status(client, refs[:2])


@pytest.mark.parametrize("response, outcome, wait", [
    (answer(200, {"errors": [{"message": "Complexity budget exhausted", "extensions": {
        "code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": 7, "status_code": 429}}]}), Outcome.RETRY, 7),
    (answer(200, {"errors": [{"message": "Complexity budget exhausted, query cost 30001 budget remaining 8639 out of "
                                         "1000000 reset in 23 seconds",
                              "extensions": {"code": "ComplexityException"}}]}),
     Outcome.RETRY, 23),
    (answer(200, {"errors": [{"message": "Too many concurrent requests", "extensions": {
        "code": "maxConcurrencyExceeded", "status_code": 429}}]}, {"retry-after": "4"}), Outcome.RETRY, 4),
    (answer(429, {"errors": [{"message": "IP rate limit exceeded", "extensions": {
        "code": "IP_RATE_LIMIT_EXCEEDED", "retry_in_seconds": 11}}]}), Outcome.RETRY, 11),
    (answer(429, {"error_message": "Rate Limit Exceeded.", "status_code": 429}, {"retry-after": "5"}),
     Outcome.RETRY, 5),
    (answer(200, {"errors": [{"message": "Concurrency limit exceeded for the field", "extensions": {
        "code": "FIELD_LIMIT_EXCEEDED", "error_data": {"retry_in_seconds": 15}, "status_code": 429}}]}),
     Outcome.RETRY, 15),
    (answer(200, {"errors": [{"message": "Resource is currently locked, please try again later",
                              "extensions": {"status_code": 423}}]}), Outcome.RETRY, None),
    (answer(500, {"errors": [{"message": "Internal server error", "extensions": {"status_code": 500}}]}),
     Outcome.RETRY, None),
    (answer(503, {"message": "unavailable"}, {"retry-after": "9"}), Outcome.RETRY, 9),
    (answer(200, None), Outcome.RETRY, None),
    (answer(400, {"error_message": "Syntax error in JSON input", "error_code": "JsonParseException",
                  "status_code": 400}), Outcome.PERMANENT, None),
    (answer(400, {"message": "bad"}), Outcome.PERMANENT, None),
    (answer(200, {"data": None, "errors": [{"message": "Board not found", "extensions": {
        "code": "InvalidBoardIdException", "status_code": 404}}]}), Outcome.PERMANENT, None),
])
@pytest.mark.slow
def test_classify(response, outcome, wait):
    verdict = connector().classify(response)
    assert verdict.outcome is outcome and verdict.retry_after == wait, verdict
    if wait is not None:
        assert verdict.status == 429 or response.status_code == 503  # 429: the dispatcher pauses the target


def test_daily_limit_waits_for_midnight_utc():
    response = answer(*daily_limit_error()[::2], daily_limit_error()[1])
    verdict = connector().classify(response)
    assert verdict.outcome is Outcome.RETRY and "midnight UTC" in verdict.reason
    assert 60 <= verdict.retry_after <= 86460 and round(time.time() + verdict.retry_after) % 86400 in range(55, 66)


@pytest.mark.parametrize("response", [
    answer(401, {"errors": [{"message": "Not Authenticated", "extensions": {"code": "UNAUTHENTICATED"}}]}),
    answer(401, None),
    answer(200, {"errors": [{"message": "User unauthorized to perform action", "extensions": {
        "code": "UserUnauthorizedException", "status_code": 403}}]}),
])
def test_credentials_errors_are_permanent_and_name_the_token(response):
    verdict = connector().classify(response)
    assert verdict.outcome is Outcome.PERMANENT and "auth.token of target mon" in verdict.reason
    assert TOKEN not in verdict.reason


# --- contract: config, schema -------------------------------------------------------------------------------


def test_config_typos_get_a_did_you_mean_and_secrets_stay_hidden(tmp_path):
    data = hub_config(tmp_path)
    data["targets"]["mon"]["bord_id"] = data["targets"]["mon"].pop("board_id")
    data["targets"]["mon"]["columns"] = {"statuss": "status"}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    text = str(info.value)
    assert 'targets.mon.bord_id: unknown key; did you mean "board_id"?' in text
    assert 'targets.mon.columns.statuss: unknown key; did you mean "status"?' in text
    config = connector().config
    assert TOKEN not in repr(config) and TOKEN not in str(config.public())
    assert config.concurrency == 1 and MondayConnector.default_rate_limit
    clash = list(connector(columns={"finding_id": "status"}).config.problems())
    assert clash == [(("columns", "finding_id"), "column 'status' is already used for status")]


def test_render_masks_the_token(tmp_path):
    path = write_config(tmp_path / "hub.yaml", hub_config(tmp_path))
    result = CliRunner().invoke(main, ["render", "--config", str(path), "--target", "mon", "--finding",
                                       str(EXAMPLES / "updated.finding.json"), "--remote-id", "9000000001"])
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output and "authorization: ********" in result.output
    assert "change_multiple_column_values" in result.output and "create_update" in result.output


def test_connector_documents_are_valid_for_the_real_schema():
    for full in (True, False):
        for doc in (mod.CREATE, mod.CHANGE, mod.COMMENT, mod.FIND, mod.STATUS):
            assert graphql.validate(schema(full), graphql.parse(doc)) == [], doc


def test_subset_schema_matches_the_full_schema():
    full, subset = schema(True), graphql.build_schema(SUBSET_SCHEMA.read_text())
    for name, kind in subset.type_map.items():
        if name.startswith("__") or graphql.is_specified_scalar_type(kind):
            continue
        whole = full.type_map[name]
        assert type(whole) is type(kind), name
        for field_name, fdef in getattr(kind, "fields", {}).items():
            assert str(whole.fields[field_name].type) == str(fdef.type), f"{name}.{field_name}"
            for arg, adef in getattr(fdef, "args", {}).items():
                assert str(whole.fields[field_name].args[arg].type) == str(adef.type), f"{name}.{field_name}({arg})"
        if isinstance(kind, graphql.GraphQLEnumType):
            assert set(kind.values) <= set(whole.values), name


async def test_the_fake_works_from_the_subset_schema_alone():
    app, c, f = fake_monday(full_schema=False), connector(), example("created")["finding"]
    [v] = await deliver(c, httpx.ASGITransport(app=app), item("finding.created", f))
    async with c.client(httpx.ASGITransport(app=app)) as client:
        [status] = await c.read_status(client, [linked(v.remote_id, f)])
    assert v.outcome is Outcome.OK and status.status == "Working on it" and not status.closed


# --- end to end through a Hub -------------------------------------------------------------------------------


def hub_config(tmp_path: Path, token: str = TOKEN) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({
            "title": "item.title", "severity": "item.severity", "tool_id": "item.id", "asset.hostname": "item.host",
            "description": "item.text"}, status="item.state")},
        "routes": [{"name": "all", "on": ["finding.created", "finding.updated", "finding.resolved", "finding.reopened"],
                    "to": ["mon", "archive"]}],
        "targets": {
            "mon": {"type": "monday", "url": "http://monday.test", "auth": {"token": token}, "board_id": "1234567890",
                    "retry": {"schedule_secs": [0.05] * 5, "jitter": 0}, "rate_limit": {"per_sec": 200},
                    "circuit_breaker": {"failures": 100, "cooldown_secs": 0.2}},
            "archive": {"type": "file", "path": str(tmp_path / "archive.ndjson")},
        },
        "pipeline": {"safety_net_secs": 0.5},
    }


class Harness(HubHarness):
    def __init__(self, hub: Hub, client: httpx.AsyncClient, *, fake: Any, **options: Any):
        super().__init__(hub, client, **options)
        self.fake = fake

    async def settle(self, done: int) -> None:
        await self.until(lambda: self.states("mon") == {"done": done}
                         and self.states("archive").get("done", 0) >= done)


def harness(tmp_path: Path, script: dict[str, list[Any]] | None = None, token: str = TOKEN
            ) -> AbstractAsyncContextManager[Harness]:
    app = fake_monday()
    return Harness.running(tmp_path, hub_config(tmp_path, token), {"mon": Flaky(app, script)}, fake=app.state.monday)


def vuln(n: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"V-{n}", "title": f"OpenSSL {n} is end of life", "severity": "high", "host": f"web-{n}",
            "text": "No more security fixes.", "state": "open", **kw}


@pytest.mark.slow
async def test_hub_create_update_resolve_reopen(tmp_path):
    async with harness(tmp_path) as h:
        await h.send([vuln(1)])
        await h.settle(1)
        await h.send([vuln(1, severity="critical")])
        await h.settle(2)
        await h.send([vuln(1, severity="critical", state="fixed")])
        await h.settle(3)
        ref = h.ref("mon", "V-1")
        assert ref.state == "linked" and ref.remote_status == "Done" and ref.url.endswith(f"/pulses/{ref.remote_id}")
        await h.send([vuln(1, severity="critical")])
        await h.settle(4)
        [made] = h.fake.items.values()
        assert made["values"]["status"] == "Working on it" and made["values"]["priority"] == "Critical"
        assert made["values"]["name"] == "[CRITICAL] OpenSSL 1 is end of life on web-1"
        assert made["values"]["text"] == ref.finding_id and h.ref("mon", "V-1").remote_status == "Working on it"
        assert h.fake.ops() == ["create_item", "change_multiple_column_values", "create_update",
                                "change_multiple_column_values", "create_update", "change_multiple_column_values",
                                "create_update"]
        assert "severity: high &rarr; critical" in h.fake.updates[0]["body"] and h.fake.overlaps == 0


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["lost", "lost502"])
async def test_hub_lost_create_answer_still_makes_one_item(tmp_path, loss):
    async with harness(tmp_path, {"create_item": [loss]}) as h:
        await h.send([vuln(1)])
        await h.settle(1)
        [made] = h.fake.items.values()
        ref = h.ref("mon", "V-1")
        assert ref.remote_id == made["id"] and made["values"]["text"] == ref.finding_id
        [d] = deliveries_of(h.hub.store.conn, target="mon")
        assert d["attempts"] == 2 and h.fake.ops() == ["create_item", "items_page_by_column_values",
                                                  "change_multiple_column_values"]


@pytest.mark.slow
async def test_hub_human_closing_the_item_resolves_the_finding_without_echo(tmp_path):
    async with harness(tmp_path) as h:
        await h.send([vuln(1), vuln(2)])
        await h.settle(2)
        one, two = h.ref("mon", "V-1"), h.ref("mon", "V-2")
        h.fake.set_status(one.remote_id, "Accepted risk")  # is_done: closed, whatever the label says
        h.fake.set_status(two.remote_id, "Stuck")
        report = await h.hub.syncs["mon"].run()
        assert (report.checked, report.resolved, report.errors) == (2, 1, 0)
        conn = h.hub.store.conn
        assert finding_rows.get(conn, one.finding_id).status == "resolved"
        assert finding_rows.get(conn, two.finding_id).status == "open"
        last = finding_rows.history(conn, one.finding_id)[-1]
        assert last["changes"]["resolved_by"] == "mon" and last["changes"]["remote_status"] == "Accepted risk"
        await h.until(lambda: h.states("archive").get("done") == 3)  # the other target hears finding.resolved
        assert h.states("mon") == {"done": 2} and h.fake.ops().count("create_update") == 0  # no echo to monday
        assert finding_rows.ref(conn, two.finding_id, "mon").remote_status == "Stuck"


@pytest.mark.slow
async def test_hub_wrong_token_goes_dead_with_a_clear_reason(tmp_path):
    async with harness(tmp_path, token="revoked-token") as h:
        await h.send([vuln(1)])
        await h.until(lambda: h.states("mon") == {"dead": 1})
        [dead] = outbox.listing(h.hub.store.conn, state="dead", target="mon")
        assert dead["attempts"] == 1 and dead["last_status"] == 401
        assert "auth.token of target mon" in dead["last_error"] and "revoked-token" not in dead["last_error"]
        shown = CliRunner().invoke(main, ["deliveries", "dead", "--config", str(tmp_path / "hub.yaml")])
        assert shown.exit_code == 0 and "monday UNAUTHENTICATED" in shown.output and dead["id"] in shown.output
        assert not h.fake.items


@pytest.mark.slow
async def test_hub_honours_retry_after_then_succeeds(tmp_path):
    async with harness(tmp_path, {"create_item": [transport_429(1)]}) as h:
        started = time.monotonic()
        await h.send([vuln(1)])
        await h.settle(1)
        assert time.monotonic() - started >= 0.9 and len(h.fake.items) == 1
        [row] = outbox.listing(h.hub.store.conn, target="mon")
        assert row["attempts"] == 2
