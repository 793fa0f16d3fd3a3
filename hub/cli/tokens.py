"""hub tokens: API bearer tokens (shown once, stored hashed) and the audit log."""

from __future__ import annotations

import getpass
import time
from typing import Any

import click

from hub import tokens as token_logic
from hub.cli.common import config_option, echo_json_lines, fail, listed_elsewhere, load, main, open_store
from hub.ids import iso
from hub.store import tokens as token_rows
from hub.store.conn import Conn


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@main.group()
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@config_option
@click.option("--name", required=True, help="Who or what uses it (shown in the audit log).")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(token_logic.SCOPES),
              help="ingest, read, replay or admin; repeat for several.")
@click.option("--expires-days", type=click.IntRange(1, token_logic.MAX_EXPIRES_DAYS),
              help="Expire after this many days (default: never).")
def tokens_create(config_path: str, name: str, scopes: tuple[str, ...], expires_days: int | None) -> None:
    """Create a token and print it once (it is stored only as a hash)."""
    store = open_store(load(config_path))
    now = time.time()

    def job(conn: Conn) -> tuple[str, dict[str, Any]]:
        token, row = token_logic.issue(conn, name, list(scopes), now, expires_days)
        token_rows.audit(conn, iso(now), _actor(), "tokens.create", row["id"], "ok",
                         {"name": name, "scopes": list(scopes), "expires_at": row["expires_at"]}, None)
        return token, row

    token, row = store.write_sync(job)
    click.echo(token)
    click.echo(f"id {row['id']}, scopes {', '.join(scopes)}, expires {row['expires_at'] or 'never'}; "
               "store it now: it is not shown again", err=True)


@tokens.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def tokens_list(config_path: str, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    rows = token_rows.listing(open_store(load(config_path)).conn)
    if listed_elsewhere(rows, as_json, "tokens"):
        return
    click.echo(f"{'ID':<12} {'NAME':<20} {'SCOPES':<24} {'EXPIRES':<24} {'STATE':<8} LAST USED")
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        click.echo(f"{r['id']:<12} {r['name']:<20.20} {','.join(r['scopes']):<24} {r['expires_at'] or 'never':<24} "
                   f"{state:<8} {r['last_used_at'] or '-'}")


@tokens.command("revoke")
@click.argument("token_id")
@config_option
def tokens_revoke(token_id: str, config_path: str) -> None:
    """Revoke a token; requests with it get 401 at once."""
    store = open_store(load(config_path))
    stamp = iso()

    def job(conn: Conn) -> bool:
        done = token_rows.revoke(conn, token_id, stamp)
        token_rows.audit(conn, stamp, _actor(), "tokens.revoke", token_id, "ok" if done else "not found", {}, None)
        return done

    if not store.write_sync(job):
        fail(f"no active token {token_id}")
    click.echo(f"revoked {token_id}")


@main.command("audit")
@config_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--actor", help="Only this actor (e.g. 'token:ci (ab12cd34ef)' or 'cli:alice').")
def audit(config_path: str, limit: int, actor: str | None) -> None:
    """Show the audit log (API calls and token changes), newest first, as JSON lines."""
    echo_json_lines(token_rows.audit_listing(open_store(load(config_path)).conn, limit, actor))
