"""End to end in one process: signed events in, findings with a lifecycle, deliveries to a fake receiver
that fails in the ways real ones do; dead letters, replay, failed events and reprocessing."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.settings import load_config
from hub.store import deliveries as outbox
from tests.fakes.webhook import Scripted, receiver
from tests.pg import fresh_schema, requires_pg
from tests.support import HubHarness, deliveries_of, events_of, findings_of, scanner_source, write_config

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="


def config_data(tmp_path: Path, *, when: str | None = None, schedule: list[float] | None = None,
                breaker: int = 100, extra_targets: dict[str, Any] | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"name": "all", "on": ["finding.created", "finding.updated", "finding.resolved",
                                                    "finding.reopened"], "to": ["hook", "archive"]}
    if when:
        route["when"] = when
    targets: dict[str, Any] = {
        "hook": {"type": "webhook", "url": "http://receiver.test/hook", "secret": OUT_SECRET,
                 "retry": {"schedule_secs": schedule or [0.05, 0.05, 0.05, 0.05, 0.05, 0.05], "jitter": 0},
                 "circuit_breaker": {"failures": breaker, "cooldown_secs": 0.2}, "concurrency": 4},
        "archive": {"type": "file", "path": "out/archive.ndjson"},
        **(extra_targets or {}),
    }
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({
            "title": "item.title", "severity": "item.severity", "tool_id": "item.id", "asset.identifier": "item.host",
            "asset.tags": "item.tags"}, status="item.state")},
        "routes": [route],
        "targets": targets,
        "pipeline": {"safety_net_secs": 0.5},
    }


def harness(tmp_path: Path, data: dict[str, Any], transport: httpx.AsyncBaseTransport
            ) -> AbstractAsyncContextManager[HubHarness]:
    return HubHarness.running(tmp_path, data, {"hook": transport}, timeout=20.0)


def item(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"F-{i}", "title": f"Finding {i}", "severity": "high", "host": f"web-{i}", "tags": ["external"],
            "state": "open", **kw}


def order_ok(received: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_finding: dict[str, list[str]] = {}
    for doc in received:
        by_finding.setdefault(doc["finding"]["tool_id"], []).append(doc["type"])
    return by_finding


@pytest.mark.slow
async def test_every_finding_arrives_in_order_through_failures(tmp_path):
    app = receiver(OUT_SECRET)
    script = [503, 503, (429, {"retry-after": "1"}), "timeout", "timeout", 502]
    transport = Scripted(app, script)
    async with harness(tmp_path, config_data(tmp_path), transport) as h:
        await h.send([item(i) for i in range(10)])
        await h.send([item(i, severity="critical") for i in range(10)])  # updated
        await h.send([item(i, state="fixed") for i in range(5)])  # resolved
        await h.send([item(i) for i in range(2)])  # reopened
        await h.send([item(i, severity="critical") for i in range(5, 10)])  # identical: nothing
        await h.until(lambda: h.events("processed") == 5)
        await h.until(h.settled)
        assert h.states() == {"done": 2 * (10 + 10 + 5 + 2)}
        assert transport.calls >= 27 + len(script)
        sequences = order_ok(app.state.received)
        assert len(app.state.received) == 27  # each (finding, step) exactly once
        for i in range(10):
            want = ["finding.created", "finding.updated"] + (["finding.resolved"] if i < 5 else []) + \
                   (["finding.reopened"] if i < 2 else [])
            assert sequences[f"F-{i}"] == want, i
        lines = (tmp_path / "out" / "archive.ndjson").read_text().splitlines()
        assert len(lines) == 27 and {json.loads(x)["type"] for x in lines} == {
            "finding.created", "finding.updated", "finding.resolved", "finding.reopened"}
        upd = next(d for d in app.state.received if d["type"] == "finding.updated")
        assert upd["changes"]["severity"] == {"old": "high", "new": "critical"}
        assert upd["finding"]["raw"]["id"] == upd["finding"]["tool_id"]  # raw included
        assert max(d["attempts"] for d in deliveries_of(h.hub.store.conn, target="hook")) >= 2


@pytest.mark.slow
async def test_dead_letters_after_the_schedule_then_replay(tmp_path):
    app = receiver(OUT_SECRET)
    transport = Scripted(app, default=500)
    data = config_data(tmp_path, schedule=[0.01, 0.01])
    async with harness(tmp_path, data, transport) as h:
        await h.send([item(1), item(2)])
        await h.until(lambda: h.states().get("dead") == 2)
        dead = outbox.listing(h.hub.store.conn, state="dead")
        assert {d["attempts"] for d in dead} == {3} and all("HTTP 500" in d["last_error"] for d in dead)
        shown = outbox.get(h.hub.store.conn, dead[0]["id"])
        assert [a["outcome"] for a in shown["attempt_log"]] == ["retry", "retry", "retry"]
        assert app.state.received == []
        assert 'hub_dead_letters{target="hook"} 2.0' in (await h.client.get("/metrics")).text
        transport.default = "ok"  # the receiver is fixed
        result = CliRunner().invoke(main, ["deliveries", "replay", "--config", str(tmp_path / "hub.yaml"),
                                           "--state", "dead", "--target", "hook"])
        assert result.exit_code == 0 and "2 delivery(ies) queued again" in result.output
        h.hub.dispatcher.wake()
        await h.until(lambda: h.states() == {"done": 4})
        assert sorted(d["finding"]["tool_id"] for d in app.state.received) == ["F-1", "F-2"]


@pytest.mark.slow
async def test_permanent_errors_go_dead_at_once_with_the_reason(tmp_path):
    transport = Scripted(receiver(OUT_SECRET), default=(400, {}))
    async with harness(tmp_path, config_data(tmp_path), transport) as h:
        await h.send([item(1)])
        await h.until(lambda: h.states().get("dead") == 1)
        [dead] = outbox.listing(h.hub.store.conn, state="dead")
        assert dead["attempts"] == 1 and dead["last_error"].startswith("HTTP 400") and dead["last_status"] == 400


@pytest.mark.slow
async def test_a_route_whose_when_fails_is_skipped_and_the_catch_all_still_delivers(tmp_path, caplog):
    """``finding.cvss_score > 7`` names a real field (the static check passes it) but fails at run time on a
    finding without a score (None > 7 is a TypeError): that route is skipped for the event, counted and logged;
    the catch-all route delivers, and the event is processed, not failed."""
    caplog.set_level("WARNING", logger="hub.routing")
    app = receiver(OUT_SECRET)
    data = config_data(tmp_path)
    data["routes"] = [{"name": "scored", "on": ["finding.created"], "when": "finding.cvss_score > 7",
                       "to": ["archive"]},
                      {"name": "everything", "on": ["finding.created"], "to": ["hook"]}]
    async with harness(tmp_path, data, Scripted(app)) as h:
        await h.send([item(1), item(2)])
        await h.until(lambda: h.events("processed") == 1)
        await h.until(lambda: h.settled(2))
        assert sorted(d["finding"]["tool_id"] for d in app.state.received) == ["F-1", "F-2"]
        assert {(d["route"], d["target"]) for d in deliveries_of(h.hub.store.conn)} == {("everything", "hook")}
        assert h.events("failed") == 0
        assert 'hub_route_errors_total{route="scored"} 2.0' in (await h.client.get("/metrics")).text
    logged = [r.getMessage() for r in caplog.records if r.name == "hub.routing"]
    assert len(logged) == 1  # the second skip within a minute is counted, not logged
    assert logged[0].startswith("route scored skipped for finding.created of fnd_") and "TypeError" in logged[0]


def test_route_skip_log_is_rate_limited_per_route_and_says_how_many_it_held_back(caplog):
    from prometheus_client import CollectorRegistry, Counter

    from hub.config import RouteConfig
    from hub.routing import LOG_EVERY_SECS, Router

    caplog.set_level("WARNING", logger="hub.routing")
    now = [1000.0]
    errors = Counter("errors", "x", ["route"], registry=CollectorRegistry())
    router = Router([RouteConfig.model_validate({"name": "bad", "on": ["finding.created"], "when": "finding.n > 1",
                                                 "to": ["a"]}),
                     RouteConfig.model_validate({"name": "all", "on": ["finding.created"], "to": ["b"]})],
                    errors, clock=lambda: now[0])
    for i in range(5):
        assert router.match("finding.created", "s", {"finding": {"id": f"fnd_{i}", "n": None}}) == [("all", "b")]
    now[0] += LOG_EVERY_SECS
    router.match("finding.created", "s", {"finding": {"id": "fnd_9", "n": "x"}})
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2 and "fnd_0" in logged[0] and "fnd_9" in logged[1]
    assert "4 more skip(s) of this route not logged" in logged[1]
    assert errors.labels("bad")._value.get() == 6


@pytest.mark.slow
async def test_adapter_failure_is_kept_and_reported(tmp_path):
    async with harness(tmp_path, config_data(tmp_path), Scripted(receiver(OUT_SECRET))) as h:
        await h.send([{"id": "x", "severity": "catastrophic", "title": "t"}])
        await h.until(lambda: h.events("failed") == 1)
        [event] = events_of(h.hub.store.conn)
        error = event["error"]
        assert "finding 0" in error and "catastrophic" in error


@pytest.mark.slow
async def test_when_filters_and_no_route_no_delivery(tmp_path):
    app = receiver(OUT_SECRET)
    data = config_data(tmp_path, when='finding.severity in ["critical", "high"] and "external" in finding.asset.tags')
    async with harness(tmp_path, data, Scripted(app)) as h:
        await h.send([item(1), item(2, severity="low"), item(3, tags=["internal"])])
        await h.until(lambda: h.events("processed") == 1)
        await h.until(h.settled)
        assert [d["finding"]["tool_id"] for d in app.state.received] == ["F-1"]
        assert len(findings_of(h.hub.store.conn)) == 3


@pytest.mark.slow
async def test_a_dead_target_does_not_delay_a_healthy_one(tmp_path):
    dead_app, healthy = receiver(OUT_SECRET), receiver(OUT_SECRET)
    extra = {"other": {"type": "webhook", "url": "http://other.test/hook", "secret": OUT_SECRET}}
    data = config_data(tmp_path, breaker=2, extra_targets=extra)
    data["routes"][0]["to"] = ["hook", "other"]
    transports = {"hook": Scripted(dead_app, default="timeout"), "other": Scripted(healthy)}
    async with HubHarness.running(tmp_path, data, transports, timeout=20.0) as h:
        await h.send([item(i) for i in range(30)])
        await h.until(lambda: len(healthy.state.received) == 30, timeout=10)
        assert h.hub.dispatcher.workers["hook"].breaker.state != "closed"
        assert h.states("hook").get("pending", 0) > 0  # waiting, not lost
        metrics = (await h.client.get("/metrics")).text
        assert 'hub_target_circuit_open{target="hook"} 1.0' in metrics
        assert 'hub_deliveries_total{outcome="ok",target="other"} 30.0' in metrics


@pytest.mark.slow
async def test_event_received_routes_forward_the_raw_event(tmp_path):
    app = receiver(OUT_SECRET)
    data = config_data(tmp_path)
    data["routes"] = [{"name": "raw", "on": ["event.received"], "to": ["hook"]}]
    async with harness(tmp_path, data, Scripted(app)) as h:
        r = await h.send([item(1)])
        await h.until(lambda: len(app.state.received) == 1)
        [doc] = app.state.received
        assert doc["type"] == "event.received" and doc["event"]["id"] == r.json()["id"]
        assert doc["event"]["body"] == {"findings": [item(1)]} and doc["event"]["verified_by"] == "standard-webhooks"


@pytest.mark.slow
async def test_delivery_dead_notifies_another_target(tmp_path):
    app = receiver(OUT_SECRET)
    extra = {"ops": {"type": "webhook", "url": "http://ops.test/hook", "secret": OUT_SECRET}}
    data = config_data(tmp_path, extra_targets=extra)
    data["routes"].append({"name": "tell-ops", "on": ["delivery.dead"], "to": ["ops"]})
    transports = {"hook": Scripted(receiver(OUT_SECRET), default=(403, {})), "ops": Scripted(app)}
    async with HubHarness.running(tmp_path, data, transports, timeout=20.0) as h:
        await h.send([item(1)])
        await h.until(lambda: len(app.state.received) == 1)
        [doc] = app.state.received
        assert doc["type"] == "delivery.dead" and doc["delivery"]["target"] == "hook"
        assert doc["delivery"]["reason"].startswith("HTTP 403") and doc["finding"]["tool_id"] == "F-1"


def test_route_problems_are_config_errors_with_lines(tmp_path):
    data = config_data(tmp_path, when='finding.severity ==')
    data["routes"][0]["to"] = ["hook", "archiv"]
    data["routes"][0]["from"] = ["scaner"]
    data["targets"]["hook"]["typ"] = "x"
    data["targets"]["archive"]["type"] = "fille"
    path = write_config(tmp_path / "bad.yaml", data)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    out = result.output
    assert 'routes[0].from[0]: unknown source "scaner"; did you mean "scanner"?' in out
    assert 'routes[0].to[1]: unknown target "archiv"; did you mean "archive"?' in out
    assert "routes[0].when: invalid expression" in out
    assert 'targets.hook.typ: unknown key; did you mean "type"?' in out
    assert 'targets.archive.type: unknown connector type "fille"; did you mean "file"?' in out
    assert all(line.startswith(f"{path}:") for line in out.splitlines()[:-1])


def test_example_config_routes_findings_to_the_archive():
    config = load_config(Path(__file__).resolve().parents[1] / "config.example.yaml", {})
    assert config.targets["archive"].type == "file"
    assert "finding.created" in config.routes[0].on


@pytest.fixture(autouse=True)
def _quiet_scheduler_logs(caplog):
    caplog.set_level("WARNING", logger="apscheduler")


@requires_pg
async def test_on_postgresql_one_findings_steps_taken_in_one_round_apply_in_order(tmp_path: Path):
    """The backlog a new leader finds holds several steps of each finding. They are applied one after another, in
    the order handed to the store (PostgreSQL's group commit, as SQLite's): when each write had a pooled connection
    of its own the second insert of a finding failed on its unique fingerprint, or an update overtook its create
    (the cluster tests found it)."""
    app = receiver(OUT_SECRET)
    data = config_data(tmp_path)
    data["routes"][0]["to"] = ["hook"]
    with fresh_schema() as url:
        data["storage"] = {"url": url}
        async with HubHarness.running(tmp_path, data, {"hook": Scripted(app)}, scheduler=False, timeout=20) as h:
            h.hub.leadership.leader = False  # a follower: the events wait for a leader
            for severity in ("low", "medium", "high", "critical"):
                for i in range(3):
                    await h.send([item(i, severity=severity)])
            assert h.events("pending") == 12
            h.hub.leadership.leader = True
            h.hub.pipeline.wake()
            await h.until(lambda: h.settled(12))
            assert h.events("failed") == 0
    steps = ["finding.created", "finding.updated", "finding.updated", "finding.updated"]
    assert order_ok(app.state.received) == {f"F-{i}": steps for i in range(3)}
