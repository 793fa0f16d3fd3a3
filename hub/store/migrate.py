"""``hub migrate``: the store's migrations applied on purpose, on either engine, without opening a store.

Both engines migrate when a store opens, which is enough for one hub. Several ``hub serve`` processes on one
PostgreSQL database would each try at start (the advisory lock in hub/store/pg_schema.py keeps that safe, but the
first start then pays for every migration while the others wait): an operator who runs ``hub migrate`` first knows
the schema is ready, and sees what changed, before any process serves. A status reads and never writes: a SQLite
file that does not exist is not created to say that everything is pending.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlite_utils import Database

from hub.errors import StoreError
from hub.store import is_url, pg_schema
from hub.store.schema import migrations
from hub.store.sqlite import migration_lock

CONNECT_TIMEOUT = 5  # seconds: an unreachable server is one line after this long, not a hang


@dataclass(frozen=True)
class Report:
    """Where the store is (a path, or its URL without the password) and its migrations by name."""

    location: str
    applied: tuple[str, ...]  # there before this call
    pending: tuple[str, ...]  # still to apply
    done: tuple[str, ...] = ()  # applied by this call


def status(where: str | Path) -> Report:
    """What is applied and what is pending; writes nothing."""
    if is_url(where):
        return _pg(str(where), lambda conn: Report(location(where), tuple(pg_schema.applied(conn)),
                                                     tuple(pg_schema.pending(conn))))
    path = Path(where)
    names = tuple(m.name for m in migrations._migrations)
    if not path.exists():
        return Report(str(path), (), names)
    try:
        conn = sqlite3.connect(path)
        try:
            db = Database(conn)
            return Report(str(path), tuple(m.name for m in migrations.applied(db)),
                          tuple(m.name for m in migrations.pending(db)))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the store at {path}: {exc}") from None


def apply(where: str | Path) -> Report:
    """Apply what is pending, as the engine does at open (under its lock: two at once apply each migration once)."""
    if is_url(where):

        def run(conn: Any) -> Report:
            before = tuple(pg_schema.applied(conn))
            done = tuple(pg_schema.apply(conn))  # one transaction: a migration that fails leaves nothing behind
            return Report(location(where), tuple(n for n in before if n not in done), (), done)

        return _pg(str(where), run)
    path = Path(where)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            db = Database(conn)
            with migration_lock(path):
                before = tuple(m.name for m in migrations.applied(db))
                migrations.apply(db)
                after = tuple(m.name for m in migrations.applied(db))
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot migrate the store at {path}: {exc}") from None
    return Report(str(path), before, (), tuple(n for n in after if n not in before))


def _pg(url: str, fn: Callable[[Any], Report]) -> Report:
    import psycopg

    with pg_connect(url) as conn:
        try:
            return fn(conn)
        except psycopg.Error as exc:
            raise StoreError(f"the store at {location(url)} failed: {scrub(first_line(exc), url)}") from None


def pg_connect(url: str, **kwargs: Any) -> Any:
    """A psycopg connection (autocommit), or StoreError in one line that names the URL without its password."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **kwargs)
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach the store at {location(url)}: {scrub(first_line(exc), url)}") from None


def scrub(text: str, url: str) -> str:
    """``text`` without the URL's password (a driver's message may quote the connection string it was given)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def location(where: str | Path) -> str:
    from hub.store.postgres import redact_url

    try:
        return redact_url(str(where))
    except ValueError:  # a URL too broken to split (a port that is not a number): show no part of its netloc
        return "the PostgreSQL URL given"
