"""hub sla: the SLA report as a table or JSON, and every finding with its SLA state as CSV.

The CSV is the export (not an API answer): it is for spreadsheets and audits, can be 100k rows, and a file
on the operator's disk is where it ends up anyway. Cells that a spreadsheet would run as a formula are
quoted (hub/sla.py).
"""

from __future__ import annotations

import sys
import time

import click

from hub.cli.common import config_option, dumps, fail, load, main, open_store
from hub.ids import iso
from hub.sla import DEFAULT_DAYS, PeriodError, period, table, write_csv


@main.group()
def sla() -> None:
    """SLA reporting: open within SLA and breached, resolved in time or late, time to resolve."""


@sla.command("report")
@config_option
@click.option("--since", help=f"Start of the period (ISO 8601); default {DEFAULT_DAYS} days before --until.")
@click.option("--until", help="End of the period (ISO 8601); default now.")
@click.option("--source", help="Only findings of this source.")
@click.option("--tag", help="Only findings whose asset carries this tag.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (the API's data).")
def sla_report(config_path: str, since: str | None, until: str | None, source: str | None, tag: str | None,
               as_json: bool) -> None:
    """Per severity, source and asset tag: open within SLA and breached (now), resolved in the period within and
    after SLA, mean and median time to resolve."""
    from hub.store import sla as q

    now = time.time()
    try:
        start, end = period(since, until, now)
    except PeriodError as exc:
        fail(str(exc), 2)
    store = open_store(load(config_path))
    report = q.report(store.conn, since=start, until=end, now=iso(now), source=source, tag=tag)
    click.echo(dumps(report) if as_json else table(report))


@sla.command("export")
@config_option
@click.option("--csv", "as_csv", is_flag=True, required=True, help="CSV (the one format; required so a later one "
              "cannot change what a script gets).")
@click.option("--source", help="Only findings of this source.")
@click.option("--tag", help="Only findings whose asset carries this tag.")
@click.option("--status", type=click.Choice(["open", "resolved", "dismissed"]), help="Only this status.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to this file "
              "(default: standard output).")
def sla_export(config_path: str, as_csv: bool, source: str | None, tag: str | None, status: str | None,
               output: str | None) -> None:
    """Every finding with its SLA state (within_sla, breached, no_sla, resolved_within_sla, resolved_late,
    resolved_no_sla, dismissed), oldest first."""
    from hub.store import sla as q

    store = open_store(load(config_path))
    rows = q.export_rows(store.conn, now=iso(), source=source, tag=tag, status=status)
    if output is None:
        write_csv(sys.stdout, q.EXPORT_COLUMNS, rows)
        return
    try:
        with open(output, "w", newline="", encoding="utf-8") as out:
            count = write_csv(out, q.EXPORT_COLUMNS, rows)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    click.echo(f"wrote {count} finding(s) to {output}")
