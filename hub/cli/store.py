"""hub migrate, hub store copy: preparing a store before hubs serve it, and moving from SQLite to PostgreSQL."""

from __future__ import annotations

import click

from hub.cli import progress as bars
from hub.cli.common import CONFIG_HELP, fail, load, main
from hub.errors import HubError


@main.command()
@click.option("--config", "config_path", default="./hub.yaml", type=click.Path(dir_okay=False),
              help=CONFIG_HELP + " Not read when --to is given.")
@click.option("--to", "to", metavar="URL_OR_PATH", help="This store instead of the config's: a postgresql:// URL or "
              "a SQLite file's path.")
@click.option("--status", is_flag=True, help="Only say what is applied and what is pending; change nothing.")
def migrate(config_path: str, to: str | None, status: bool) -> None:
    """Apply the store's pending migrations now (a hub does at start; run this before starting several)."""
    from hub.store import migrate as migrations

    where = to if to is not None else load(config_path).store_location
    try:
        report = migrations.status(where) if status else migrations.apply(where)
    except HubError as exc:
        fail(str(exc))
    if status:
        for name in report.applied:
            click.echo(f"applied  {name}")
        for name in report.pending:
            click.echo(f"pending  {name}")
        click.echo(f"{report.location}: {len(report.applied)} applied, {len(report.pending)} pending")
    elif report.done:
        before = f" ({len(report.applied)} applied before)" if report.applied else ""
        click.echo(f"{report.location}: applied {', '.join(report.done)}{before}")
    else:
        click.echo(f"{report.location}: nothing to apply ({len(report.applied)} migrations applied already)")


@main.group()
def store() -> None:
    """Move the store between engines."""


@store.command("copy")
@click.option("--to", "to", required=True, metavar="URL",
              help="An empty PostgreSQL database (or schema): postgresql://user:password@host:5432/name")
@click.option("--config", "config_path", default="./hub.yaml", type=click.Path(dir_okay=False),
              help=CONFIG_HELP + " Its storage.path is the SQLite store copied.")
def store_copy(to: str, config_path: str) -> None:
    """Copy the SQLite store, ids and all, into an empty PostgreSQL database. Stop the hub first."""
    from hub.store import SqliteStore, is_url
    from hub.store.copy import copy_store, rows_to_copy
    from hub.store.lock import StoreLockedError, hold, release
    from hub.store.migrate import location

    if not is_url(to):
        fail("--to takes a postgresql:// URL (the SQLite store copied is the config's storage.path)", 2)
    config = load(config_path)
    if config.storage.url is not None:
        fail(f"{config_path} already stores in PostgreSQL (storage.url); hub store copy reads a SQLite store "
             "(storage.path)", 2)
    db = config.db_path
    if not db.exists():
        fail(f"no store at {db} (storage.path in {config_path})")
    try:
        hold(db)  # no hub serves it while it is copied: rows written meanwhile would be missed
    except StoreLockedError as exc:
        who = f"pid {exc.holder}" if exc.holder else "another process"
        fail(f"{db} is being served by {who}: stop the hub before copying its store (rows written during the copy "
             "would be missed)")
    except HubError as exc:
        fail(str(exc))
    try:
        source = SqliteStore(db)
        try:
            total = rows_to_copy(source.conn) if bars.is_terminal() else 0  # a count costs a scan: for the bar only
            with bars.progress(total, "copying") as advance:
                copied = copy_store(source.conn, to, advance)
        finally:
            source.conn.close()
    except HubError as exc:
        fail(str(exc))
    finally:
        release(db)
    tables = ", ".join(f"{table} {n:,}" for table, n in copied.rows.items() if n)
    click.echo(f"copied {copied.total:,} rows from {db} to {location(to)} in {copied.seconds:.1f} s"
               + (f" ({tables})" if tables else ""))
