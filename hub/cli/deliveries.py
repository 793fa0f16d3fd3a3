"""hub deliveries: the outbox. List, show attempts, find dead letters, replay after a fix."""

from __future__ import annotations

from functools import partial

import click
import orjson

from hub.cli.common import config_option, dumps, fail, listed_elsewhere, load, main, open_store
from hub.cli.progress import progress
from hub.ids import iso, parse_iso

STATES = ["pending", "in_flight", "done", "dead"]


@main.group()
def deliveries() -> None:
    """Inspect and replay deliveries (the outbox)."""


def _print(rows: list[dict], as_json: bool) -> None:
    if listed_elsewhere(rows, as_json, "deliveries"):
        return
    click.echo(f"{'ID':<12} {'TARGET':<16} {'KIND':<18} {'STATE':<9} {'TRIES':>5}  {'CREATED':<24} "
               f"{'NEXT ATTEMPT':<24} LAST ERROR")
    for r in rows:
        click.echo(f"{r['id']:<12} {r['target']:<16.16} {r['kind']:<18} {r['state']:<9} {r['attempts']:>5}  "
                   f"{r['created_at']:<24} {next_attempt(r):<24} {(r['last_error'] or '')[:80]}")


def next_attempt(row: dict) -> str:
    """When a pending delivery is tried next; a delivery in flight, done or dead has no next attempt."""
    return str(row["next_attempt_at"]) if row["state"] == "pending" else "-"


@deliveries.command("list")
@config_option
@click.option("--state", type=click.Choice(STATES), help="Only this state.")
@click.option("--target", help="Only this target.")
@click.option("--finding", "finding_id", metavar="FND_ID", help="Only the deliveries of this finding.")
@click.option("--event", "event_id", metavar="EVT_ID", help="Only the deliveries of this inbound event "
              "(event.received; a finding's steps are under --finding).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def deliveries_list(config_path: str, state: str | None, target: str | None, finding_id: str | None,
                    event_id: str | None, limit: int, as_json: bool) -> None:
    """List deliveries, newest first, with when each pending one is tried next."""
    from hub.store import deliveries as q

    store = open_store(load(config_path))
    _print(q.listing(store.conn, state=state, target=target, limit=limit, finding=finding_id, event=event_id),
           as_json)


@deliveries.command("dead")
@config_option
@click.option("--target", help="Only this target.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def deliveries_dead(config_path: str, target: str | None, limit: int, as_json: bool) -> None:
    """List dead letters (deliveries that gave up), newest first."""
    from hub.store import deliveries as q

    store = open_store(load(config_path))
    _print(q.listing(store.conn, state="dead", target=target, limit=limit), as_json)


@deliveries.command("show")
@click.argument("delivery_id")
@config_option
def deliveries_show(delivery_id: str, config_path: str) -> None:
    """One delivery with every attempt (time, duration, HTTP status, outcome, reason)."""
    from hub.store import deliveries as q

    store = open_store(load(config_path))
    row = q.get(store.conn, delivery_id)
    if row is None:
        fail(f"no delivery {delivery_id}")
    row["snapshot"] = orjson.loads(row["snapshot"]) if row["snapshot"] else None
    payload = row.pop("payload")
    row["payload"] = payload.decode("utf-8", "replace") if payload else None
    click.echo(dumps(row))


@deliveries.command("replay")
@click.argument("delivery_ids", nargs=-1)
@config_option
@click.option("--state", type=click.Choice(["dead", "done"]), help="Replay every delivery in this state.")
@click.option("--target", help="With --state: only this target.")
@click.option("--since", help="With --state: only deliveries created at or after this time (ISO 8601).")
@click.option("--page", default=500, show_default=True, type=click.IntRange(1, 10_000), help="Rows per transaction.")
def deliveries_replay(delivery_ids: tuple[str, ...], config_path: str, state: str | None, target: str | None,
                      since: str | None, page: int) -> None:
    """Send deliveries again with the current mappings; a running hub picks them up at once."""
    from hub.store import deliveries as q

    if bool(delivery_ids) == bool(state):
        fail("name delivery ids, or use --state dead [--target T] [--since TIME]", 2)
    if since:
        try:
            since = iso(parse_iso(since))
        except ValueError:
            fail(f"--since {since!r} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)", 2)
    store = open_store(load(config_path))
    now = iso()
    if delivery_ids:
        parsed = [q.parse_id(d) for d in delivery_ids]
        if None in parsed:
            fail(f"not a delivery id: {delivery_ids[parsed.index(None)]}", 2)
        chosen = [s for s in parsed if s is not None]
        count = store.write_sync(lambda conn: q.replay(conn, chosen, now))
        click.echo(f"{count} delivery(ies) queued again")
        if count < len(chosen):
            fail(f"{len(chosen) - count} delivery(ies) not found or not dead/done")
        return
    total, after = 0, 0
    expected = q.replay_count(store.conn, state=state or "dead", target=target, since=since)
    with progress(expected, "replaying") as advance:
        while True:  # page by page: never the whole set in memory, never one huge transaction
            seqs = q.replay_page(store.conn, state=state or "dead", target=target, since=since, after=after,
                                 limit=page)
            if not seqs:
                break
            total += store.write_sync(partial(q.replay, seqs=seqs, now=now))
            after = seqs[-1]
            advance(len(seqs))
    click.echo(f"{total} delivery(ies) queued again")
