"""splunk_hec: batches of gzip'd HEC envelopes, one verdict per event, against a fake HEC that checks
what Splunk checks; end to end through an in-process Hub (10,000 events, HEC busy then back, a rejected
event, indexer acknowledgement with a lost batch)."""

from __future__ import annotations

import gzip
import json
import shutil
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from connectors.splunk_hec import SplunkHecConfig, SplunkHecConnector
from hub.cli import main
from hub.connector import Item, Outcome, Verdict
from hub.errors import ConfigError
from hub.mappings import BUILTIN_ROOT, load_mapping
from hub.settings import load_config
from tests.fakes.splunk_hec import TOKEN, fake_hec, keys
from tests.support import HubHarness, deliveries_of, scanner_source, write_config

URL = "http://hec.test:8088"
FINDING = orjson.loads((BUILTIN_ROOT / "splunk_hec" / "examples" / "created.finding.json").read_bytes())
RAW = {"id": "evt_1", "source": "scanner", "received_at": "2026-11-22T10:00:00.250Z", "verified_by": "token",
       "content_type": "application/json", "body": {"alert": "x"}}


def connector(tmp_path: Path | None = None, mapping: Path | None = None, **cfg: Any) -> SplunkHecConnector:
    config = SplunkHecConfig.model_validate({"type": "splunk_hec", "url": URL, "auth": {"token": TOKEN}, **cfg})
    return SplunkHecConnector("siem", config, load_mapping("splunk_hec", mapping or BUILTIN_ROOT / "splunk_hec",
                                                           ("event",)))


def finding_item(i: int, kind: str = "finding.created", **finding: Any) -> Item:
    return Item(f"dlv_{i}", kind, f"key_{i}", "r", "siem", {**FINDING, "id": f"fnd_{i}", **finding})


def raw_item(i: int) -> Item:
    return Item(f"dlv_{i}", "event.received", f"key_{i}", "r", "siem", event={**RAW, "id": f"evt_{i}"})


async def deliver(hec: SplunkHecConnector, transport: httpx.AsyncBaseTransport, items: list[Item]) -> list[Verdict]:
    async with hec.client(transport=transport) as client:
        return await hec.deliver_batch(client, items)


def scripted(*answers: tuple[int, Any]) -> tuple[httpx.MockTransport, list[list[dict[str, Any]]]]:
    """A MockTransport answering in turn; records the envelopes of each request."""
    seen: list[list[dict[str, Any]]] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        seen.append([json.loads(line) for line in body.splitlines()])
        status, doc = queue.pop(0) if queue else (200, {"text": "Success", "code": 0})
        return httpx.Response(status, **({"json": doc} if isinstance(doc, dict) else {"text": doc}))
    return httpx.MockTransport(handler), seen


# --- the connector against the fake ------------------------------------------------------------------------


async def test_one_gzip_request_of_concatenated_envelopes():
    app = fake_hec()
    items = [finding_item(0), finding_item(1, "finding.updated", severity="high"), raw_item(2)]
    verdicts = await deliver(connector(index="security"), httpx.ASGITransport(app=app), items)
    assert [v.outcome for v in verdicts] == [Outcome.OK] * 3
    [headers] = app.state.requests
    assert headers["authorization"] == f"Splunk {TOKEN}" and headers["content-encoding"] == "gzip"
    created, updated, raw = app.state.events
    assert created["time"] == 1795341600.0 and created["host"] == "db-prod-02.internal"
    assert created["sourcetype"] == "findings:finding" and created["source"] == "findings-hub"
    assert created["index"] == "security" and created["event"]["finding"]["raw"] == FINDING["raw"]
    assert created["fields"] == {"idempotency_key": "key_0", "event_type": "finding.created", "finding_id": "fnd_0",
                                 "severity": "critical", "status": "open", "hub_source": "secureendpoint",
                                 "cve": ["CVE-2024-21412"]}
    assert updated["fields"]["event_type"] == "finding.updated" and updated["event"]["type"] == "finding.updated"
    assert raw["sourcetype"] == "findings:event" and raw["time"] == 1795341600.25 and "host" not in raw
    assert raw["event"] == {**RAW, "id": "evt_2"}  # the original body with the hub's metadata
    assert raw["fields"] == {"idempotency_key": "key_2", "event_type": "event.received", "event_id": "evt_2",
                             "hub_source": "scanner"}


async def test_uncompressed_and_batch_limits():
    app = fake_hec()
    hec = connector(batch={"max_events": 4, "compression": False})
    verdicts = await deliver(hec, httpx.ASGITransport(app=app), [finding_item(i) for i in range(10)])
    assert all(v.outcome is Outcome.OK for v in verdicts) and len(app.state.requests) == 3
    assert "content-encoding" not in app.state.requests[0] and sorted(keys(app)) == [f"key_{i}" for i in range(10)]


async def test_the_fake_checks_what_hec_checks():
    app = fake_hec(max_content_length=4000)
    good = orjson.dumps({"event": "x", "fields": {"a": "b"}})
    cases = [
        ({"authorization": None}, good, 401, 2), ({"authorization": "Bearer " + TOKEN}, good, 401, 3),
        ({"authorization": "Splunk nope"}, good, 403, 4),
        ({"content-encoding": "gzip"}, good, 400, 6),  # says gzip, is not
        ({}, b"  \n", 400, 5),
        ({}, good + b"\n" + orjson.dumps({"event": "y", "fields": {"nested": {"a": 1}}}), 400, 15),
        ({}, orjson.dumps({"time": "yesterday", "event": "x"}), 400, 6),
        ({}, orjson.dumps({"event": "   "}), 400, 13),
        ({}, orjson.dumps({"fields": {}}), 400, 12),
        ({}, good + b" " + orjson.dumps({"event": "x", "index": "secret"}), 400, 7),
        ({}, good + b"\n{broken", 400, 6),
        ({}, b"\n".join([good] * 200), 413, None),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=URL) as client:
        for headers, body, status, code in cases:
            sent = {k: v for k, v in {"authorization": f"Splunk {TOKEN}", **headers}.items() if v is not None}
            r = await client.post("/services/collector/event", content=body, headers=sent)
            assert (r.status_code, r.json().get("code")) == (status, code), (headers, body[:60], r.text)
        r = await client.post("/services/collector/event", content=gzip.compress(good + b"\n" + good),
                              headers={"authorization": f"Splunk {TOKEN}", "content-encoding": "gzip"})
        assert r.json() == {"text": "Success", "code": 0}
    assert [e["event"] for e in app.state.events] == ["x"] * 5  # 3 before a bad one (codes 15, 7, 6) + 2 gzip'd


async def test_413_splits_the_batch_in_halves_and_a_lone_giant_is_permanent():
    app = fake_hec(max_content_length=8000)  # ~5 findings per request fit
    items = [finding_item(i) for i in range(20)] + [finding_item(20, description="x" * 9000)]
    verdicts = await deliver(connector(batch={"compression": False}), httpx.ASGITransport(app=app), items)
    assert [v.outcome for v in verdicts[:20]] == [Outcome.OK] * 20
    assert verdicts[20].outcome is Outcome.PERMANENT and "413" in verdicts[20].reason
    assert sorted(keys(app)) == sorted(f"key_{i}" for i in range(20)) and max(keys(app).values()) == 1
    assert len(app.state.requests) > len(app.state.sizes)  # some were refused with 413 before being read


async def test_a_rejected_event_fails_alone_and_the_rest_is_delivered(tmp_path):
    app = fake_hec()
    hec = connector()
    render = hec.encode
    hec.encode = lambda item: render(item).replace(b'"fields"', b'"index":"secret","fields"') \
        if item.idempotency_key == "key_3" else render(item)  # type: ignore[method-assign]
    verdicts = await deliver(hec, httpx.ASGITransport(app=app), [finding_item(i) for i in range(8)])
    assert [v.outcome for v in verdicts] == [Outcome.OK] * 3 + [Outcome.PERMANENT] + [Outcome.OK] * 4
    assert "Incorrect index" in verdicts[3].reason and "targets.siem.index" in verdicts[3].reason
    assert keys(app) == {f"key_{i}": 1 for i in range(8) if i != 3}  # nothing lost, nothing twice


async def test_invalid_event_number_counts_from_zero_for_code_6():
    transport, seen = scripted((400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 2}))
    verdicts = await deliver(connector(), transport, [finding_item(i) for i in range(5)])
    assert [v.outcome for v in verdicts] == [Outcome.OK, Outcome.OK, Outcome.PERMANENT, Outcome.OK, Outcome.OK]
    assert "code 6 (Invalid data format)" in verdicts[2].reason
    assert [[e["fields"]["idempotency_key"] for e in req] for req in seen] == [
        [f"key_{i}" for i in range(5)], ["key_3", "key_4"]]


async def test_without_an_event_number_the_bad_event_is_isolated_by_halving():
    bad = (400, {"text": "Invalid data format", "code": 6})
    transport, seen = scripted(bad, (200, {"code": 0}), bad, bad, (200, {"code": 0}))
    verdicts = await deliver(connector(), transport, [finding_item(i) for i in range(4)])
    assert [v.outcome for v in verdicts] == [Outcome.OK, Outcome.OK, Outcome.PERMANENT, Outcome.OK]
    assert [len(r) for r in seen] == [4, 2, 2, 1, 1]


@pytest.mark.parametrize(("status", "doc", "outcome", "words"), [
    (503, {"text": "Server is busy", "code": 9}, Outcome.RETRY, "code 9 (Server is busy)"),
    (500, {"text": "Internal server error", "code": 8}, Outcome.RETRY, "code 8"),
    (503, {"text": "HEC is unhealthy, queues are full", "code": 18}, Outcome.RETRY, "code 18"),
    (429, "slow down", Outcome.RETRY, "HTTP 429"),
    (502, "<html>bad gateway</html>", Outcome.RETRY, "HTTP 502"),
    (400, {"text": "No data", "code": 5}, Outcome.PERMANENT, "code 5"),
    (400, "bad request", Outcome.PERMANENT, "HTTP 400: bad request"),
    (401, {"text": "Token is required", "code": 2}, Outcome.PERMANENT, "targets.siem.auth.token"),
    (403, {"text": "Invalid token", "code": 4}, Outcome.PERMANENT, "targets.siem.auth.token"),
    (403, {"text": "Token disabled", "code": 1}, Outcome.PERMANENT, "enabled"),
    (400, {"text": "Data channel is missing", "code": 10}, Outcome.PERMANENT, "set targets.siem.ack.enabled: true"),
    (400, {"text": "Query string authorization is not enabled", "code": 16}, Outcome.PERMANENT, "code 16"),
])
@pytest.mark.slow
async def test_answers_are_classified_by_status_and_hec_code(status, doc, outcome, words):
    transport, _ = scripted((status, doc))
    verdicts = await deliver(connector(), transport, [finding_item(0), finding_item(1)])
    assert {v.outcome for v in verdicts} == {outcome} and words in verdicts[0].reason, verdicts[0].reason
    assert TOKEN not in verdicts[0].reason


async def test_a_template_failure_fails_only_its_item():
    app = fake_hec()
    items = [finding_item(0), finding_item(1, last_seen="not a date"), finding_item(2)]
    verdicts = await deliver(connector(), httpx.ASGITransport(app=app), items)
    assert [v.outcome for v in verdicts] == [Outcome.OK, Outcome.PERMANENT, Outcome.OK]
    assert "template error" in verdicts[1].reason and "event.json.j2" in verdicts[1].reason
    assert sorted(keys(app)) == ["key_0", "key_2"]


async def test_mapping_output_hec_would_reject_is_caught_before_sending(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(BUILTIN_ROOT / "splunk_hec", folder)
    (folder / "event.json.j2").write_text('{{ {"event": finding["title"], "fields": {"asset": finding["asset"]}} '
                                          '| tojson }}')
    [verdict] = await deliver(connector(mapping=folder), httpx.ASGITransport(app=fake_hec()), [finding_item(0)])
    assert verdict.outcome is Outcome.PERMANENT and "fields.asset" in verdict.reason and "flat" in verdict.reason


async def test_delivery_dead_renders_with_and_without_a_finding():
    hec = connector()
    dead = {"id": "dlv_9", "target": "tickets", "kind": "finding.created", "reason": "HTTP 400", "attempts": 1}
    for finding in (FINDING, None):
        [out] = hec.render(Item("dlv_10", "delivery.dead", "key_10", "r", "siem", finding, dead=dead))
        doc = orjson.loads(out.body)
        assert doc["event"]["delivery"] == dead and doc["fields"]["dead_target"] == "tickets"
        assert ("finding_id" in doc["fields"]) is (finding is not None)


# --- indexer acknowledgement ---------------------------------------------------------------------------------


async def test_ack_items_are_done_only_once_indexed():
    app = fake_hec(ack=True, ack_after_polls=2)
    hec = connector(ack={"enabled": True, "poll_secs": 0.01, "timeout_secs": 5}, batch={"max_events": 3})
    verdicts = await deliver(hec, httpx.ASGITransport(app=app), [finding_item(i) for i in range(7)])
    assert all(v.outcome is Outcome.OK and v.reason.startswith("indexed (ack ") for v in verdicts)
    assert {v.reason for v in verdicts} == {"indexed (ack 0)", "indexed (ack 1)", "indexed (ack 2)"}
    assert {h["x-splunk-request-channel"] for h in app.state.requests} == {hec.channel}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=URL) as client:
        again = await client.post("/services/collector/ack", json={"acks": [0, 1, 2]},
                                  headers={**hec.headers})  # a true is reported once
    assert again.json() == {"acks": {"0": False, "1": False, "2": False}}


@pytest.mark.slow
async def test_ack_timeout_sends_again():
    app = fake_hec(ack=True)
    app.state.lose_next = 1  # the first request is answered but never indexed
    hec = connector(ack={"enabled": True, "poll_secs": 0.01, "timeout_secs": 0.2})
    items = [finding_item(i) for i in range(3)]
    verdicts = await deliver(hec, httpx.ASGITransport(app=app), items)
    assert all(v.outcome is Outcome.RETRY and "no indexer acknowledgement" in v.reason for v in verdicts)
    assert app.state.events == []
    verdicts = await deliver(hec, httpx.ASGITransport(app=app), items)
    assert all(v.outcome is Outcome.OK for v in verdicts) and keys(app) == {f"key_{i}": 1 for i in range(3)}


async def test_token_with_ack_on_needs_ack_enabled():
    [verdict] = await deliver(connector(), httpx.ASGITransport(app=fake_hec(ack=True)), [finding_item(0)])
    assert verdict.outcome is Outcome.PERMANENT
    assert "ack.enabled: true" in verdict.reason and "code 10" in verdict.reason


# --- configuration, docs, preview -----------------------------------------------------------------------------


def test_config_rejects_typos_and_hides_the_token(tmp_path):
    data = {"storage": {"path": str(tmp_path / "hub.db")},
            "targets": {"siem": {"type": "splunk_hec", "url": URL, "auth": {"token": TOKEN}, "indx": "main"}}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    assert 'targets.siem.indx: unknown key; did you mean "index"?' in str(info.value)
    del data["targets"]["siem"]["url"]
    data["targets"]["siem"]["index"] = data["targets"]["siem"].pop("indx")
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "hub.yaml", data))
    assert "targets.siem.url: required key is missing" in str(info.value)
    config = connector().config
    assert TOKEN not in repr(config) and TOKEN not in str(config.public())
    assert config.batch.max_bytes <= 1_000_000 and config.batch.compression and config.batch.in_flight > 1


def test_render_shows_the_request_with_the_token_masked(tmp_path):
    data = {"storage": {"path": str(tmp_path / "hub.db")},
            "targets": {"siem": {"type": "splunk_hec", "url": URL, "auth": {"token": TOKEN}, "index": "security"}}}
    write_config(tmp_path / "hub.yaml", data)
    example = BUILTIN_ROOT / "splunk_hec" / "examples" / "created.finding.json"
    result = CliRunner().invoke(main, ["render", "--config", str(tmp_path / "hub.yaml"), "--target", "siem",
                                       "--finding", str(example), "--json"])
    assert result.exit_code == 0, result.output
    [req] = json.loads(result.output)
    assert req["url"] == URL + "/services/collector/event" and req["headers"]["authorization"] == "********"
    assert TOKEN not in result.output and json.loads(req["body"])["index"] == "security"


# --- end to end through a Hub -----------------------------------------------------------------------------------


def hub_config(tmp_path: Path, **target: Any) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "severity": "item.severity", "tool_id": "item.id",
                                               "asset.identifier": "item.host"})},
        "routes": [{"name": "siem", "on": ["event.received", "finding.created"], "to": ["splunk"]}],
        "targets": {"splunk": {"type": "splunk_hec", "url": URL, "auth": {"token": TOKEN}, "index": "security",
                               "retry": {"schedule_secs": [0.05] * 6, "jitter": 0},
                               "circuit_breaker": {"failures": 1000, "cooldown_secs": 0.1},
                               "batch": {"timeout_secs": 0.02, "in_flight": 4}, **target}},
        "pipeline": {"safety_net_secs": 0.5},
    }


def harness(tmp_path: Path, data: dict[str, Any], app: Any) -> AbstractAsyncContextManager[HubHarness]:
    return HubHarness.running(tmp_path, data, {"splunk": httpx.ASGITransport(app=app)}, timeout=30.0)


def findings(start: int, count: int, **kw: Any) -> list[dict[str, Any]]:
    return [{"id": f"F-{i}", "title": f"Finding {i}", "severity": "high", "host": f"web-{i}", **kw}
            for i in range(start, start + count)]


def delivered_ids(app: Any) -> list[str]:
    return sorted(e["event"]["finding"]["tool_id"] for e in app.state.events if e["sourcetype"] == "findings:finding")


@pytest.mark.slow
async def test_ten_thousand_events_none_lost_none_twice(tmp_path):
    app = fake_hec()
    async with harness(tmp_path, hub_config(tmp_path), app) as h:
        for start in range(0, 10_000, 2_000):
            await h.send(findings(start, 2_000))
        await h.until(lambda: h.settled(10_000 + 5))  # + one event.received per webhook
        assert h.states() == {"done": 10_005}
        counts = keys(app)
        assert len(counts) == 10_005 and set(counts.values()) == {1}
        assert delivered_ids(app) == sorted(f"F-{i}" for i in range(10_000))
        assert len([e for e in app.state.events if e["sourcetype"] == "findings:event"]) == 5
        assert all(h["content-encoding"] == "gzip" for h in app.state.requests)
        assert max(app.state.sizes) <= 1_000_000 and len(app.state.requests) < 100


@pytest.mark.slow
async def test_hec_busy_for_a_while_then_back(tmp_path):
    app = fake_hec()
    app.state.busy = True
    async with harness(tmp_path, hub_config(tmp_path), app) as h:
        await h.send(findings(0, 300))
        await h.until(lambda: app.state.busy_answers >= 3)
        assert app.state.events == [] and not h.states().get("dead")
        app.state.busy = False
        await h.until(lambda: h.settled(301))
        assert h.states() == {"done": 301} and set(keys(app).values()) == {1} and len(keys(app)) == 301
        assert max(d["attempts"] for d in deliveries_of(h.hub.store.conn)) >= 2


@pytest.mark.slow
async def test_a_rejected_event_is_dead_alone_end_to_end(tmp_path):
    folder = tmp_path / "mapping"
    shutil.copytree(BUILTIN_ROOT / "splunk_hec", folder)
    template = folder / "event.json.j2"  # ops route some findings to an index the token may not write to
    template.write_text(template.read_text().replace('"index": target["index"],\n    "event": {"type": kind, "finding"',
                                                     '"index": "restricted" if finding["title"] == "poison" else '
                                                     'target["index"],\n    "event": {"type": kind, "finding"'))
    app = fake_hec()
    async with harness(tmp_path, hub_config(tmp_path, mapping=str(folder)), app) as h:
        await h.send(findings(0, 20) + findings(20, 1, title="poison") + findings(21, 19))
        await h.until(lambda: h.settled(41))
        assert h.states() == {"done": 40, "dead": 1}
        [dead] = deliveries_of(h.hub.store.conn, state="dead")
        reason = dead["last_error"]
        assert "code 7 (Incorrect index)" in reason and "targets.splunk.index" in reason
        assert delivered_ids(app) == sorted(f"F-{i}" for i in range(40) if i != 20)
        assert set(keys(app).values()) == {1}


@pytest.mark.slow
async def test_ack_flow_with_a_lost_batch_end_to_end(tmp_path):
    app = fake_hec(ack=True)
    app.state.lose_next = 1
    data = hub_config(tmp_path, ack={"enabled": True, "poll_secs": 0.02, "timeout_secs": 0.3})
    async with harness(tmp_path, data, app) as h:
        await h.send(findings(0, 50))
        await h.until(lambda: h.settled(51))
        assert h.states() == {"done": 51} and len(keys(app)) == 51 and set(keys(app).values()) == {1}
        retried = [d for d in deliveries_of(h.hub.store.conn) if d["attempts"] > 1]
        assert len(retried) >= 1 and app.state.ack_polls >= 2
