"""Logs an operator can read (issue 14): the scheduler quiet at the default level with jobs named for what they do,
JSON lines that carry the ids of what they are about (and never a secret), and the env-default notes once."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from hub import logs, signatures
from hub.cli import main
from hub.runtime import Hub
from hub.settings import load_config
from tests.support import SW_SECRET, HubHarness, base_config, findings_of, scanner_source, write_config

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A StringIO for hub.logs.setup; the root logger and APScheduler's are put back as they were after."""
    root, aps = logging.getLogger(), logging.getLogger("apscheduler")
    saved = (list(root.handlers), root.level, aps.level)
    try:
        yield io.StringIO()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        aps.setLevel(saved[2])


async def run_scheduler(tmp_path: Path, seconds: float) -> Hub:
    data = base_config(tmp_path, pipeline={"safety_net_secs": 0.02})
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)))
    await hub.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await hub.aclose()
    return hub


@pytest.mark.slow
async def test_scheduler_runs_log_nothing_at_the_default_level(tmp_path, stream):
    # The safety net every 20 ms for 0.6 s: about 30 runs, what 2.5 minutes of the default 5 s interval make.
    logs.setup("info", "text", stream)
    await run_scheduler(tmp_path, 0.6)
    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if "apscheduler" in line or "Running job" in line], lines
    assert logging.getLogger("apscheduler").getEffectiveLevel() == logging.WARNING  # its warnings still show
    # at debug they are there, and name the job by what it does
    logs.setup("debug", "text", stream)
    await run_scheduler(tmp_path, 0.2)
    assert 'Running job "safety-net (trigger: interval' in stream.getvalue()


async def test_every_job_is_named_for_what_it_does(tmp_path):
    from tests.fakes.linear import API_KEY, TEAM

    data = base_config(tmp_path, targets={"linear": {"type": "linear", "auth": {"api_key": API_KEY}, "team_id": TEAM,
                                                     "url": "http://linear.test"}})
    data["sources"]["secureendpoint"] = {"adapter": "secureendpoint", "poll": {
        "every_secs": 300, "url": "http://se.test/v1/findings", "auth": {"bearer": "se_live_test"}}}
    hub = Hub(load_config(write_config(tmp_path / "hub.yaml", data)), transports={"linear": httpx.MockTransport(
        lambda r: httpx.Response(503))}, scheduler=False)
    try:
        from hub.scheduler import build_scheduler

        jobs = {job.id: job.name for job in build_scheduler(hub.jobs()).get_jobs()}
    finally:
        await hub.aclose()
    shared = ("leader", "statistics") if hub.config.storage.url else ()  # PostgreSQL: who leads; its planner
    assert jobs == {n: n for n in ("safety-net", "sla", "gauges", "retention", "dead-letters",
                                   "poll:secureendpoint", "sync:linear", *shared)}


async def test_json_lines_carry_the_ids_they_are_about_and_no_secret(tmp_path, stream):
    data = {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id", "severity": "item.sev"})},
        "routes": [{"name": "all", "on": ["finding.created"], "to": ["hook"]},
                   {"name": "picky", "on": ["finding.created"], "when": "finding.raw.nope > 1", "to": ["hook"]}],
        "targets": {"hook": {"type": "webhook", "url": "http://receiver.test/hook", "secret": OUT_SECRET}},
        "logging": {"format": "json"},
    }
    config = load_config(write_config(tmp_path / "hub.yaml", data))
    assert config.logging.format == "json" and config.logging.level == "info"
    logs.setup("debug", config.logging.format, stream)
    refuse = httpx.MockTransport(lambda r: httpx.Response(400, json={"error": "bad"}))  # permanent: dead at once
    async with HubHarness.running(tmp_path, data, {"hook": refuse}, scheduler=False) as h:
        await h.send([{"id": "A", "title": "one", "sev": "high"}])
        await h.until(lambda: h.states("hook") == {"dead": 1})
        await h.post("scanner", {"findings": "not a list"})  # the adapter fails this event
        await h.until(lambda: h.events("failed") == 1)
        forged = signatures.build("standard-webhooks", ["whsec_" + "QUJD" * 8]).sign(b"{}", 0, "msg_x")
        r = await h.client.post("/hooks/scanner", content=b"{}", headers={"content-type": "application/json",
                                                                          **forged})
        assert r.status_code == 401
        [found] = findings_of(h.hub.store.conn)
        fid = found.id
    text = stream.getvalue()
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)

    def one(**match: Any) -> dict[str, Any]:
        found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
        assert found, f"no line with {match} in {records}"
        return found[0]

    stored = one(logger="hub.receiver", event_id="evt_1", source="scanner")
    assert stored["level"] == "DEBUG"
    processed = one(logger="hub.pipeline", event_id="evt_1", source="scanner", level="DEBUG")
    assert "deliveries to hook" in processed["message"]
    skipped = one(logger="hub.routing", route="picky", finding_id=fid, level="WARNING")
    assert skipped["event_id"] == "evt_1"  # logged while processing that event
    dead = one(logger="hub.delivery", level="WARNING", delivery_id="dlv_1", target="hook", finding_id=fid)
    assert "dead after 1 attempt" in dead["message"]
    failed = one(logger="hub.pipeline", level="WARNING", event_id="evt_2", source="scanner")
    assert "failed" in failed["message"]
    one(logger="hub.receiver", level="WARNING", source="scanner")  # the forged signature
    for secret in (SW_SECRET, OUT_SECRET, OUT_SECRET.removeprefix("whsec_"), SW_SECRET.removeprefix("whsec_")):
        assert secret not in text


@pytest.mark.parametrize("public_url", ["https://hub.example.com", None])
def test_json_lines_link_their_ids_to_the_console_when_public_url_is_set(stream, public_url):
    logs.setup("info", "json", stream, public_url=public_url)
    with logs.about(event_id="evt_7", finding_id="fnd_ab12", delivery_id="dlv_3", target="hook"):
        logging.getLogger("hub.test").info("about three ids")
    logging.getLogger("hub.test").info("about nothing")
    logs.setup("info", "text", stream, public_url=public_url)
    with logs.about(event_id="evt_7"):
        logging.getLogger("hub.test").info("text stays text")
    [about, nothing, text] = stream.getvalue().splitlines()
    record = json.loads(about)
    urls = {k: v for k, v in record.items() if k.endswith("_url")}
    if public_url:
        assert urls == {"event_url": "https://hub.example.com/ui/events/evt_7",
                        "finding_url": "https://hub.example.com/ui/findings/fnd_ab12",
                        "delivery_url": "https://hub.example.com/ui/deliveries/dlv_3"}
    else:
        assert urls == {}
    assert record["event_id"] == "evt_7" and record["target"] == "hook"
    assert not [k for k in json.loads(nothing) if k.endswith("_url")]
    assert text.endswith("INFO hub.test: text stays text")


def test_a_default_used_by_many_secrets_is_one_note(tmp_path):
    secrets = {"scheme": "hmac-sha256", "header": "X-Sig", "secrets": ["${HOOK_SECRET:-dev-secret}"]}
    data = base_config(tmp_path)
    data["sources"] = {name: {"verify": copy.deepcopy(secrets)} for name in ("a", "b", "c")}  # no YAML anchors
    data["sources"]["d"] = {"verify": {**secrets, "secrets": ["${OTHER_SECRET:-x}"]}}
    path = write_config(tmp_path / "hub.yaml", data)
    result = CliRunner().invoke(main, ["events", "list", "--config", str(path)],
                                env={"HOOK_SECRET": None, "OTHER_SECRET": None})
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2, notes
    assert "HOOK_SECRET is not set: using the default written in the file (also at line " in notes[0]
    assert notes[0].count("line ") == 2 and "OTHER_SECRET" in notes[1]


@pytest.mark.slow
def test_hub_serve_with_json_logs_writes_only_json_lines(tmp_path):
    import signal

    from tests.support import HubProcess

    data = base_config(tmp_path, logging={"format": "json"})
    data["sources"]["se"]["verify"]["secrets"] = ["${HOOK_SECRET:-dev-secret-default}"]
    config = write_config(tmp_path / "hub.yaml", data)
    with HubProcess(config, env={"HOOK_SECRET": ""}) as served:
        r = httpx.post(served.url + "/hooks/se", content=b"{}", headers={"x-se-signature": "sha256=00"})
        assert r.status_code == 401
        served.kill(signal.SIGTERM)
    lines = served.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # the config note and uvicorn's lines included
    assert any("HOOK_SECRET is not set" in r["message"] for r in records)
    assert any(r.get("source") == "se" and r["message"].startswith("rejected source=se") for r in records)
    assert "dev-secret-default" not in served.log.read_text()
