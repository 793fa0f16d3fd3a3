"""hub events: inspect stored inbound events, list failures, reprocess after a fix."""

from __future__ import annotations

import click
import orjson

from hub import jsonlimits
from hub.cli.common import config_option, dumps, fail, listed_elsewhere, load, main, open_store
from hub.cli.progress import progress


@main.group()
def events() -> None:
    """Inspect stored inbound events."""


@events.command("list")
@config_option
@click.option("--source", help="Only this source.")
@click.option("--state", type=click.Choice(["pending", "waiting", "processed", "failed"]),
              help="Only this processing state (waiting: pending, held until its source's API answers).")
@click.option("--failed", is_flag=True, help="Only events whose processing failed (same as --state failed).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def events_list(config_path: str, source: str | None, state: str | None, failed: bool, limit: int,
                as_json: bool) -> None:
    """List events, newest first (failed ones show their error, waiting ones why and until when)."""
    from hub.store import events as q

    state = "failed" if failed else state
    store = open_store(load(config_path))
    rows = q.listing(store.conn, source=source, state=state, limit=limit)
    if listed_elsewhere(rows, as_json, "events"):
        return
    click.echo(f"{'ID':<12} {'SOURCE':<16} {'RECEIVED':<24} {'STATE':<10} {'SIZE':>7}  KEY / ERROR")
    for r in rows:
        tail = r["error"] if r["state"] in ("failed", "waiting") else (r["idempotency_key"] or "-")
        click.echo(f"{r['id']:<12} {r['source']:<16.16} {r['received_at']:<24} {r['state']:<10} {r['size']:>7}  "
                   f"{tail}")


@events.command("show")
@click.argument("event_id")
@config_option
def events_show(event_id: str, config_path: str) -> None:
    """Show one event: metadata, stored (redacted) headers and body."""
    from hub.store import events as q

    store = open_store(load(config_path))
    row = q.get(store.conn, event_id)
    if row is None:
        fail(f"no event {event_id}")
    body: bytes = row.pop("body")
    row["headers"] = orjson.loads(row["headers"])
    row["body"] = jsonlimits.parsed_or_text(body)
    click.echo(dumps(row))


@events.command("reprocess")
@click.argument("event_ids", nargs=-1)
@config_option
@click.option("--failed", is_flag=True, help="Every failed event (after fixing the adapter, template or route).")
@click.option("--source", help="With --failed: only this source.")
@click.option("--page", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="With --failed: events per transaction.")
def events_reprocess(event_ids: tuple[str, ...], config_path: str, failed: bool, source: str | None,
                     page: int) -> None:
    """Put events back in the queue; a running hub processes them within seconds."""
    from hub.store import events as q

    if not event_ids and not failed:
        fail("name event ids, or use --failed", 2)
    store = open_store(load(config_path))
    if event_ids:
        count = store.write_sync(lambda conn: q.reprocess(conn, ids=list(event_ids)))
    else:  # page by page, like a bulk replay: short transactions beside a running hub, and a progress bar
        count, after = 0, 0
        with progress(q.failed_count(store.conn, source), "reprocessing") as advance:
            while seqs := q.failed_page(store.conn, source=source, after=after, limit=page):
                count += store.write_sync(lambda conn, s=seqs: q.reprocess_failed(conn, s))  # type: ignore[misc]
                after = seqs[-1]
                advance(len(seqs))
    click.echo(f"{count} event(s) queued for processing")
    if event_ids and count < len(event_ids):
        fail(f"{len(event_ids) - count} id(s) not found")
