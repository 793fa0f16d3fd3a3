"""SLA reporting: the store's report and export on findings with known dates, the CSV's formula guard, the
API endpoint and the CLI commands."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from hub.app import create_app
from hub.cli import main
from hub.ids import iso, parse_iso
from hub.models import Finding
from hub.runtime import Hub
from hub.settings import load_config
from hub.sla import csv_cell, write_csv
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store import sla
from hub.store.schema import migrations
from tests.support import base_config, write_config

DAY = 86400.0
NOW = parse_iso("2026-12-01T00:00:00Z")
SINCE, UNTIL = iso(NOW - 30 * DAY), iso(NOW)


def at(days: float) -> str:
    """A time ``days`` after NOW (negative: before)."""
    return iso(NOW + days * DAY)


def add(conn: Any, ident: int, severity: str, *, source: str = "scanner", tags: list[str] | None = None,
        first: float = -10, due: float | None = 5, resolved: float | None = None, status: str | None = None,
        title: str = "finding") -> None:
    f = Finding.model_validate({
        "id": f"fnd_{ident:026d}", "fingerprint": f"fp{ident}", "source": source, "title": title,
        "severity": severity, "asset": {"hostname": f"host-{ident}", "tags": tags or []},
        "status": status or ("resolved" if resolved is not None else "open"), "first_seen": at(first),
        "last_seen": at(first), "resolved_at": at(resolved) if resolved is not None else None,
        "sla_due_at": at(due) if due is not None else None})
    finding_rows.save(conn, f, None, at(first))


@pytest.fixture
def conn() -> Any:
    db = Database(memory=True)
    migrations.apply(db)
    c = db.conn
    # open: critical within SLA (due in 2 days), critical breached (due 3 days ago, not yet marked by the job),
    # high breached, info without SLA
    add(c, 1, "critical", tags=["external", "prod"], first=-5, due=2)
    add(c, 2, "critical", tags=["external"], first=-10, due=-3)
    add(c, 3, "high", source="other", tags=["prod"], first=-40, due=-10)
    add(c, 4, "info", first=-1, due=None)
    # resolved in the period: critical in 2 days (within), critical in 10 days (late), high in 4 days (within)
    add(c, 5, "critical", tags=["external"], first=-20, due=-13, resolved=-18)
    add(c, 6, "critical", tags=["prod"], first=-25, due=-18, resolved=-15)
    add(c, 7, "high", source="other", first=-9, due=21, resolved=-5)
    # outside the report: resolved before the period, and dismissed
    add(c, 8, "critical", first=-60, due=-53, resolved=-40)
    add(c, 9, "critical", first=-5, due=2, status="dismissed")
    return c


def test_report_counts_open_breached_resolved_and_times_to_resolve(conn: Any) -> None:
    doc = sla.report(conn, since=SINCE, until=UNTIL, now=iso(NOW))
    total = doc["total"]
    assert {k: total[k] for k in sla.COUNTS} == {
        "open_within_sla": 1, "open_breached": 2, "open_no_sla": 1,
        "resolved_within_sla": 2, "resolved_late": 1, "resolved_no_sla": 0}
    # 2, 10 and 4 days to resolve: mean 5.33 days, median 4
    assert total["mean_time_to_resolve_secs"] == round(16 / 3 * DAY, 1)
    assert total["median_time_to_resolve_secs"] == 4 * DAY
    by_severity = {r["severity"]: r for r in doc["by_severity"]}
    assert list(by_severity) == ["critical", "high", "medium", "low", "info"]
    crit = by_severity["critical"]
    assert (crit["open_within_sla"], crit["open_breached"], crit["resolved_within_sla"], crit["resolved_late"]) \
        == (1, 1, 1, 1)
    assert crit["mean_time_to_resolve_secs"] == 6 * DAY and crit["median_time_to_resolve_secs"] == 6 * DAY
    assert by_severity["medium"]["open_within_sla"] == 0 and by_severity["medium"]["mean_time_to_resolve_secs"] is None
    assert by_severity["info"]["open_no_sla"] == 1
    by_source = {r["source"]: r for r in doc["by_source"]}
    assert by_source["other"]["open_breached"] == 1 and by_source["other"]["resolved_within_sla"] == 1
    assert by_source["other"]["median_time_to_resolve_secs"] == 4 * DAY
    by_tag = {r["tag"]: r for r in doc["by_tag"]}
    assert set(by_tag) == {"external", "prod"}
    assert (by_tag["external"]["open_within_sla"], by_tag["external"]["open_breached"],
            by_tag["external"]["resolved_within_sla"]) == (1, 1, 1)
    assert by_tag["prod"]["resolved_late"] == 1 and by_tag["prod"]["open_breached"] == 1


def test_report_filters_and_period(conn: Any) -> None:
    tagged = sla.report(conn, since=SINCE, until=UNTIL, now=iso(NOW), tag="external")["total"]
    assert (tagged["open_within_sla"], tagged["open_breached"], tagged["resolved_within_sla"]) == (1, 1, 1)
    other = sla.report(conn, since=SINCE, until=UNTIL, now=iso(NOW), source="other")
    assert other["total"]["open_breached"] == 1 and other["total"]["resolved_within_sla"] == 1
    assert [r["source"] for r in other["by_source"]] == ["other"]
    # a period that holds only the late critical (resolved 15 days ago)
    narrow = sla.report(conn, since=at(-16), until=at(-14), now=iso(NOW))["total"]
    assert (narrow["resolved_within_sla"], narrow["resolved_late"]) == (0, 1)
    assert narrow["median_time_to_resolve_secs"] == 10 * DAY
    # the same store later: the critical within SLA has passed its date
    later = sla.report(conn, since=SINCE, until=UNTIL, now=at(3))["total"]
    assert (later["open_within_sla"], later["open_breached"]) == (0, 3)


def test_export_rows_carry_each_findings_sla_state(conn: Any) -> None:
    rows = list(sla.export_rows(conn, now=iso(NOW), page=2))  # several pages
    states = {r[0][-1]: r[sla.EXPORT_COLUMNS.index("sla_state")] for r in rows}
    assert states == {"1": "within_sla", "2": "breached", "3": "breached", "4": "no_sla",
                      "5": "resolved_within_sla", "6": "resolved_late", "7": "resolved_within_sla",
                      "8": "resolved_late", "9": "dismissed"}
    first = dict(zip(sla.EXPORT_COLUMNS, rows[0], strict=True))
    assert first["asset"] == "host-1" and first["tags"] == "external;prod" and first["sla_due_at"] == at(2)
    assert [r[0] for r in sla.export_rows(conn, now=iso(NOW), tag="prod", status="open")] \
        == ["fnd_00000000000000000000000001", "fnd_00000000000000000000000003"]


def test_a_due_date_moved_into_the_future_is_watched_again_by_the_breach_job() -> None:
    """Reopened (or a severity lowered) after a breach: the new date gets its own breach notice when it passes.
    A date moved but still past (severity raised after the breach) gets no second one."""
    c = Database(memory=True).conn
    migrations.apply(Database(c))
    add(c, 1, "high", first=-40, due=-10)
    assert [f.id for f in finding_rows.due_for_sla(c, iso(NOW))] == ["fnd_00000000000000000000000001"]
    finding_rows.mark_sla_breached(c, "fnd_00000000000000000000000001", iso(NOW))
    assert finding_rows.due_for_sla(c, iso(NOW)) == []
    stored = finding_rows.get(c, "fnd_00000000000000000000000001")
    assert stored is not None
    raised = stored.model_copy(update={"severity": "critical", "sla_due_at": at(-33)})  # earlier, still past
    finding_rows.save(c, raised, None, iso(NOW))
    assert finding_rows.due_for_sla(c, at(30)) == []
    finding_rows.save(c, raised.model_copy(update={"sla_due_at": at(7)}), None, iso(NOW))  # reopened today
    assert finding_rows.due_for_sla(c, at(6)) == []
    assert [f.sla_due_at for f in finding_rows.due_for_sla(c, at(8))] == [at(7)]
    state = {r[0]: r[-1] for r in sla.export_rows(c, now=iso(NOW))}
    assert state == {"fnd_00000000000000000000000001": None}


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(value: str) -> None:
    assert csv_cell(value) == "'" + value
    out = io.StringIO()
    write_csv(out, ("title",), [(value,)])
    assert list(csv.reader(io.StringIO(out.getvalue())))[1] == ["'" + value]


def test_csv_keeps_plain_values_and_empty_cells(conn: Any) -> None:
    assert csv_cell("SQL injection") == "SQL injection" and csv_cell(None) == "" and csv_cell(3.5) == "3.5"
    out = io.StringIO()
    add(conn, 10, "low", title="=cmd|' /C calc'!A0", due=None)
    write_csv(out, sla.EXPORT_COLUMNS, sla.export_rows(conn, now=iso(NOW), source="scanner", status="open"))
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["id"][-2:] for r in table] == ["01", "02", "04", "10"]
    assert table[-1]["title"] == "'=cmd|' /C calc'!A0" and table[-1]["sla_due_at"] == ""


# --- the API and the CLI, on findings ingested through the pipeline at known times ------------------------------

# the CLI counts open findings as of the real time: these findings are dated from the start of today
TODAY = float(int(time.time() // DAY) * DAY)


def at_api(days: float) -> str:
    return iso(TODAY + days * DAY)[:10]


@pytest.fixture
async def hub_api(tmp_path: Path) -> AsyncIterator[tuple[Hub, httpx.AsyncClient, Path, list[float]]]:
    clock = [TODAY - 10 * DAY]
    config = write_config(tmp_path / "hub.yaml", base_config(tmp_path, api={"rate_limit_per_min": 1000}))
    hub = Hub(load_config(config), clock=lambda: clock[0])
    await hub.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)),
                                     base_url="http://hub.test") as client:
            yield hub, client, config, clock
    finally:
        await hub.aclose()


def token(config: Path, *scopes: str) -> str:
    args = ["tokens", "create", "--config", str(config), "--name", "t", *(a for s in scopes for a in ("--scope", s))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[0]


async def ingest(hub: Hub, client: httpx.AsyncClient, key: str, items: list[dict[str, Any]]) -> None:
    r = await client.post("/api/v1/findings", json={"scanner_name": "s", "findings": items},
                          headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 202, r.text
    for _ in range(200):
        if not event_rows.counts(hub.store.conn).get("pending"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("events still pending")


async def test_api_and_cli_report_on_findings_from_the_pipeline(hub_api: Any) -> None:
    hub, client, config, clock = hub_api
    key = token(config, "ingest", "read")
    await ingest(hub, client, key, [
        {"id": "a", "title": "RCE", "severity": "critical", "asset_identifier": "h1", "tags": ["external"]},
        {"id": "b", "title": "=HYPERLINK(\"http://evil\")", "severity": "high", "asset_identifier": "h2"}])
    clock[0] = TODAY - 3600  # ten days later: the critical (7 days) is fixed late, the high (30 days) is in SLA
    await ingest(hub, client, key, [{"id": "a", "title": "RCE", "severity": "critical", "asset_identifier": "h1",
                                     "status": "resolved"}])
    clock[0] = TODAY
    auth = {"authorization": f"Bearer {key}"}
    r = await client.get("/api/v1/sla", headers=auth)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["period"] == {"since": iso(TODAY - 30 * DAY), "until": iso(TODAY)} and data["as_of"] == iso(TODAY)
    by_severity = {row["severity"]: row for row in data["by_severity"]}
    assert by_severity["critical"]["resolved_late"] == 1 and by_severity["critical"]["resolved_within_sla"] == 0
    assert by_severity["critical"]["mean_time_to_resolve_secs"] == 10 * DAY - 3600
    assert by_severity["high"]["open_within_sla"] == 1
    assert data["by_source"] == [{"source": "api", **data["total"]}]
    assert [row["tag"] for row in data["by_tag"]] == ["external"]
    tagged = (await client.get(f"/api/v1/sla?tag=external&since={at_api(-20)}&until={at_api(1)}", headers=auth)).json()
    assert tagged["data"]["total"]["resolved_late"] == 1 and tagged["data"]["total"]["open_within_sla"] == 0
    for bad in ("since=soon", "until=", "until=2026-13-01", "since=2026-12-01&until=2026-11-01", "severity=high"):
        r = await client.get(f"/api/v1/sla?{bad}", headers=auth)
        assert r.status_code == 400 and r.json()["code"] == "invalid_parameter", (bad, r.text)
    assert (await client.get("/api/v1/sla")).status_code == 401
    only_ingest = {"authorization": f"Bearer {token(config, 'ingest')}"}
    assert (await client.get("/api/v1/sla", headers=only_ingest)).json()["code"] == "forbidden"

    runner = CliRunner()
    text = runner.invoke(main, ["sla", "report", "--config", str(config), "--since", at_api(-20)])
    assert text.exit_code == 0, text.output
    lines = {line.split()[0]: line.split() for line in text.output.splitlines() if line.strip()}
    assert lines["critical"][1:6] == ["0", "0", "0", "0", "1"] and lines["critical"][6] == "10.0d"
    assert lines["high"][1:6] == ["1", "0", "0", "0", "0"] and lines["external"][5] == "1"
    as_json = runner.invoke(main, ["sla", "report", "--config", str(config), "--json", "--source", "api"])
    assert as_json.exit_code == 0 and orjson.loads(as_json.output)["total"]["resolved_late"] == 1
    bad = runner.invoke(main, ["sla", "report", "--config", str(config), "--since", "soon"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output

    out = runner.invoke(main, ["sla", "export", "--config", str(config), "--csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert {r["sla_state"] for r in rows} == {"resolved_late", "within_sla"}
    assert [r["title"] for r in rows if r["severity"] == "high"] == ["'=HYPERLINK(\"http://evil\")"]
    target = config.parent / "sla.csv"
    saved = runner.invoke(main, ["sla", "export", "--config", str(config), "--csv", "--status", "open",
                                 "--output", str(target)])
    assert saved.exit_code == 0 and "1 finding(s)" in saved.output
    assert len(list(csv.DictReader(target.open(newline="")))) == 1
