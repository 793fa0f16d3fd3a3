"""The operator's read commands (issue 14): `hub findings list|show`, `hub deliveries list --finding/--event` with
the next attempt, and `hub explain` saying for each route whether it matched and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.explain import MISSING, explain, fields_read, value_at
from hub.settings import load_config
from hub.store import SqliteStore
from tests.support import HubHarness, findings_of, scanner_source

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="


def config(tmp_path: Path) -> dict[str, Any]:
    hook = {"type": "webhook", "secret": OUT_SECRET}
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id", "severity": "item.sev",
                                               "asset.identifier": "item.host"})},
        "routes": [
            {"name": "crit", "on": ["finding.created"], "when": 'finding.severity == "critical"', "to": ["ok"]},
            {"name": "elsewhere", "on": ["finding.created"], "from": ["api"], "to": ["ok"]},
            {"name": "resolved", "on": ["finding.resolved"], "to": ["ok"]},
            {"name": "all", "on": ["finding.created"], "to": ["down"]},
            {"name": "raw", "on": ["event.received"], "when": "event.body.findings[0].nope > 1", "to": ["ok"]},
        ],
        "targets": {"ok": {**hook, "url": "http://ok.test/hook"},
                    "down": {**hook, "url": "http://down.test/hook", "retry": {"schedule_secs": [3600]}}},
        "pipeline": {"safety_net_secs": 0.5},
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A store after one event of three findings: the critical one delivered to `ok`, all three waiting at `down`
    (503, next try in an hour). Yields (config file, {tool id: finding id}); the hub is closed by then."""
    import asyncio

    tmp_path = tmp_path_factory.mktemp("findings")
    transports = {"ok": httpx.MockTransport(lambda r: httpx.Response(200)),
                  "down": httpx.MockTransport(lambda r: httpx.Response(503))}

    async def fill() -> dict[str, str]:
        async with HubHarness.running(tmp_path, config(tmp_path), transports, scheduler=False) as h:
            await h.send([{"id": "A", "title": "Critical one", "sev": "critical", "host": "web-1"},
                          {"id": "B", "title": "High one", "sev": "high", "host": "web-2"},
                          {"id": "C", "title": "Low one", "sev": "low", "host": "web-1"}])
            await h.until(lambda: h.states("ok") == {"done": 1} and h.states("down").get("pending") == 3)
            return {f.tool_id: f.id for f in findings_of(h.hub.store.conn)}

    ids = asyncio.run(fill())
    yield tmp_path / "hub.yaml", ids


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
def test_findings_list_filters_and_keyset_pages(stored):
    path, ids = stored
    code, out = run("findings", "list", "--config", str(path))
    assert code == 0, out
    assert out.splitlines()[0].split()[:4] == ["ID", "SEVERITY", "STATUS", "SOURCE"]
    assert all(ids[t] in out for t in "ABC")
    code, out = run("findings", "list", "--config", str(path), "--severity", "CRITICAL", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [ids["A"]]
    code, out = run("findings", "list", "--config", str(path), "--asset", "web-1", "--json")
    assert {json.loads(line)["id"] for line in out.splitlines()} == {ids["A"], ids["C"]}
    code, out = run("findings", "list", "--config", str(path), "--sla-breached")
    assert code == 0 and out.strip() == "no findings"
    seen: list[str] = []
    before: list[str] = []
    for _ in range(4):  # one per page, until the end
        code, out = run("findings", "list", "--config", str(path), "--limit", "1", "--json", *before)
        page = [json.loads(line)["id"] for line in out.splitlines()]
        if not page:
            break
        seen += page
        before = ["--before", page[-1]]
    assert sorted(seen) == sorted(ids.values()) and len(seen) == 3
    code, out = run("findings", "list", "--config", str(path), "--limit", "1")
    assert out.strip().splitlines()[-1].startswith("more: add --before fnd_")
    code, out = run("findings", "list", "--config", str(path), "--before", "fnd_nope")
    assert code == 2 and "no such finding" in out


def test_findings_show_has_history_tickets_and_deliveries_per_target(stored):
    path, ids = stored
    code, out = run("findings", "show", ids["A"], "--config", str(path))
    assert code == 0, out
    assert "Critical one" in out and "finding.created" in out
    deliveries = out.split("\ndeliveries:")[1]
    assert "  down:" in deliveries and "  ok:" in deliveries
    assert "done" in deliveries.split("  ok:")[1] and "next attempt 20" in deliveries.split("  down:")[1]
    code, out = run("findings", "show", ids["A"], "--config", str(path), "--json")
    doc = json.loads(out)
    assert {d["target"] for d in doc["deliveries"]} == {"ok", "down"} and doc["history"][0]["event_type"] == \
        "finding.created"
    code, out = run("findings", "show", "fnd_nope", "--config", str(path))
    assert code == 1 and "no finding fnd_nope" in out


def test_deliveries_list_by_finding_and_by_event_shows_the_next_attempt(stored):
    path, ids = stored
    code, out = run("deliveries", "list", "--config", str(path), "--finding", ids["B"])
    assert code == 0, out
    header, *rows = out.splitlines()
    assert "NEXT ATTEMPT" in header and len(rows) == 1 and " down " in rows[0]
    at = header.index("NEXT ATTEMPT")
    assert rows[0][at:at + 2] == "20"  # a time, for the pending one
    code, out = run("deliveries", "list", "--config", str(path), "--event", "evt_1", "--json")
    rows_json = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["target"], r["finding_id"]) for r in rows_json) == sorted(
        [("ok", ids["A"]), ("down", ids["A"]), ("down", ids["B"]), ("down", ids["C"])])
    code, out = run("deliveries", "list", "--config", str(path), "--event", "evt_1", "--state", "done")
    done_row = out.splitlines()[1]
    assert done_row[at:].startswith("-")  # done: no next attempt
    code, out = run("deliveries", "list", "--config", str(path), "--event", "evt_99")
    assert out.strip() == "no deliveries"


def test_explain_a_finding_says_why_each_route_matched_or_not(stored):
    path, ids = stored
    code, out = run("explain", ids["B"], "--config", str(path))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"finding.created {ids['B']} from scanner at ") and lines[0].endswith("-> down")
    assert '  - crit: `finding.severity == "critical"` is false' in lines
    assert '      finding.severity = "high"' in lines
    assert "  - elsewhere: source scanner is not in from [api]" in lines
    assert "  - resolved: kind finding.created is not in on [finding.resolved]" in lines
    assert "  + all: matched (no when) -> down" in lines
    code, out = run("explain", ids["A"], "--config", str(path), "--json")
    doc = json.loads(out)
    crit = doc["steps"][0]["routes"][0]
    assert crit["matched"] and crit["targets"] == ["ok"] and crit["read"] == {"finding.severity": "critical"}
    assert doc["steps"][0]["targets"] == ["ok", "down"]


def test_explain_an_event_covers_its_own_step_and_the_findings_it_made(stored):
    path, ids = stored
    code, out = run("explain", "evt_1", "--config", str(path), "--json")
    assert code == 0, out
    steps = json.loads(out)["steps"]
    assert [s["kind"] for s in steps] == ["event.received"] + ["finding.created"] * 3
    raw = steps[0]["routes"][4]
    assert raw["route"] == "raw" and not raw["matched"]
    assert raw["reason"] == "`when` failed: 'dict object' has no attribute 'nope'"
    assert raw["read"] == {"event.body.findings.0.nope": MISSING}
    assert {s["subject"] for s in steps[1:]} == set(ids.values())
    code, out = run("explain", "evt_99", "--config", str(path))
    assert code == 1 and "no event evt_99" in out
    code, out = run("explain", "dlv_1", "--config", str(path))
    assert code == 2


def test_explain_is_a_typed_result_a_console_can_render(stored):
    path, ids = stored
    config = load_config(path)
    result = explain(SqliteStore(config.db_path).conn, config, ids["C"])
    assert result is not None and result.steps[0].targets == ["down"]
    assert [v.matched for v in result.steps[0].routes] == [False, False, False, True, False]


def test_fields_read_by_a_when():
    assert fields_read('finding.severity in ["critical", "high"] and "prod" in finding.asset.tags') == \
        ["finding.severity", "finding.asset.tags"]
    assert fields_read('kind == "finding.updated" and changes["severity"] and finding.title.startswith("X")') == \
        ["kind", "changes.severity", "finding.title"]
    assert value_at({"a": {"b": [1, {"c": 2}]}}, "a.b.1.c") == 2 and value_at({"a": {}}, "a.b") == MISSING


def test_findings_show_lists_tickets_with_their_urls(stored):
    from hub.store import findings as finding_rows

    path, ids = stored
    store = SqliteStore(load_config(path).db_path)
    store.write_sync(lambda conn: (finding_rows.claim_ref(conn, ids["C"], "ok", "2026-12-01T00:00:00.000Z"),
                                   finding_rows.link_ref(conn, ids["C"], "ok", "TCK-9", "https://tickets.test/TCK-9",
                                                         "In Progress", "2026-12-01T00:00:00.000Z")))
    store.conn.close()
    code, out = run("findings", "show", ids["C"], "--config", str(path))
    assert code == 0, out
    tickets = out.split("\ntickets:")[1].split("\ndeliveries:")[0].strip().splitlines()
    assert tickets == ["ok               TCK-9  In Progress  https://tickets.test/TCK-9"]
