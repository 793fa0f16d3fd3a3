"""hub findings: what the hub knows about a finding, from the shell (the store is read, never written)."""

from __future__ import annotations

from typing import Any

import click
import orjson

from hub.cli.common import config_option, fail, listed_elsewhere, load, main, open_store
from hub.models import SEVERITIES

STATUSES = ["open", "resolved", "dismissed"]


@main.group()
def findings() -> None:
    """List findings and show one with its history, tickets and deliveries."""


@findings.command("list")
@config_option
@click.option("--severity", type=click.Choice(SEVERITIES, case_sensitive=False), help="Only this severity.")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only this status.")
@click.option("--source", help="Only findings of this source.")
@click.option("--asset", help="Only findings whose asset has this identifier or carries this tag.")
@click.option("--sla-breached", is_flag=True, help="Only findings past their SLA date.")
@click.option("--before", metavar="FND_ID", help="The page after this finding (the last id of the previous page).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def findings_list(config_path: str, severity: str | None, status: str | None, source: str | None, asset: str | None,
                  sla_breached: bool, before: str | None, limit: int, as_json: bool) -> None:
    """List findings, newest first (by first seen). A full page ends with the command for the next one."""
    from hub.store import findings as q

    store = open_store(load(config_path))
    if before is not None and q.get(store.conn, before) is None:
        fail(f"--before {before}: no such finding", 2)
    rows = q.page(store.conn, status=status.lower() if status else None,
                  severity=severity.lower() if severity else None, source=source, asset=asset,
                  sla_breached=sla_breached, before=before, limit=limit)
    if listed_elsewhere(rows, as_json, "findings"):
        return
    click.echo(f"{'ID':<30} {'SEVERITY':<8} {'STATUS':<9} {'SOURCE':<12} {'FIRST SEEN':<24} {'SLA':<8} "
               f"{'ASSET':<20} TITLE")
    for r in rows:
        sla = "breached" if r["sla_breached_at"] else ("due" if r["sla_due_at"] else "-")
        click.echo(f"{r['id']:<30} {r['severity']:<8} {r['status']:<9} {r['source'] or '-':<12.12} "
                   f"{r['first_seen']:<24} {sla:<8} {r['asset'] or '-':<20.20} {r['title'][:80]}")
    if len(rows) == limit:
        click.echo(f"more: add --before {rows[-1]['id']}")


@findings.command("show")
@click.argument("finding_id")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def findings_show(finding_id: str, config_path: str, as_json: bool) -> None:
    """One finding: its fields, its history, its tickets (with URLs) and its deliveries per target."""
    from hub.cli.common import dumps
    from hub.store import deliveries as dq
    from hub.store import findings as q

    store = open_store(load(config_path))
    found = q.get(store.conn, finding_id)
    if found is None:
        fail(f"no finding {finding_id}")
    data = found.model_dump(mode="json", exclude={"raw"})
    if "enrichment" in found.raw:  # whether its source's API completed it (hub/enrichment.py)
        data["enrichment"] = found.raw["enrichment"]
    data["sla_breached_at"] = q.sla_breached_at(store.conn, finding_id)
    history = q.history(store.conn, finding_id)
    sent = dq.listing(store.conn, finding=finding_id, limit=10_000)
    if as_json:
        click.echo(dumps({**data, "history": history, "deliveries": sent}))
        return
    refs = data.pop("external_refs")
    for key in ("id", "title", "severity", "status", "source", "scanner", "tool_id", "cvss_score", "cve", "cwe",
                "rule_id", "location", "first_seen", "last_seen", "resolved_at", "sla_due_at", "sla_breached_at",
                "fingerprint"):
        value = data.get(key)
        if value not in (None, [], ""):
            click.echo(f"{key + ':':<17} {value if not isinstance(value, list) else ', '.join(map(str, value))}")
    asset = data.get("asset") or {}
    if any(asset.values()):
        click.echo(f"{'asset:':<17} {orjson.dumps({k: v for k, v in asset.items() if v}).decode()}")
    if "enrichment" in data:
        click.echo(f"{'enrichment:':<17} {orjson.dumps(data['enrichment']).decode()}")
    click.echo("\nhistory:")
    for h in history:
        changes = orjson.dumps(h["changes"]).decode() if h["changes"] else ""
        click.echo(f"  {h['at']}  {h['event_type']:<22} {h['event_id'] or h['actor']:<12} {changes[:200]}")
    click.echo("\ntickets:" + ("" if refs else " none"))
    for target, ref in sorted(refs.items()):
        click.echo(f"  {target:<16} {ref['id'] or '(being created)'}  {ref['status'] or '-'}  {ref['url'] or ''}")
    click.echo("\ndeliveries:" + ("" if sent else " none"))
    by_target: dict[str, list[dict[str, Any]]] = {}
    for row in sent:
        by_target.setdefault(row["target"], []).append(row)
    for target, rows in sorted(by_target.items()):
        click.echo(f"  {target}:")
        for r in reversed(rows):  # oldest first, like the history
            when = f"next attempt {r['next_attempt_at']}" if r["state"] == "pending" else ""
            error = f"  {r['last_error'][:100]}" if r["last_error"] else ""
            click.echo(f"    {r['id']:<12} {r['kind']:<22} {r['state']:<9} tries {r['attempts']}  {when}{error}")
