"""The store a benchmark's hubs run on, and the processes it starts: shared by bench/ingest.py and bench/pipeline.py.

``--store sqlite`` is a fresh file in the run's temporary folder (one ``hub serve`` per file: the serve lock);
``--store postgres`` a fresh schema on ``--pg-url`` (default: env HUB_BENCH_PG_URL, else the local test server),
dropped at the end, that ``--processes N`` hubs share. ``--compare`` runs every configuration of ``COMPARE`` in one
invocation, so their figures come from one machine in one state.

``Procs`` starts every child in a session of its own and kills each session at the end, however the bench ends
(an error, Ctrl-C, or SIGTERM from ``timeout``): a SIGKILLed hub leaves no render-pool worker behind.
The schema helper is a copy of tests/pg.py's (bench does not import tests).

    python bench/stores.py --pg-reachable    exit 0 if the PostgreSQL server answers (bench/smoke.sh asks)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_PG_URL = os.environ.get("HUB_BENCH_PG_URL") or "postgresql://127.0.0.1:5432/test"
COMPARE = [("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3)]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--processes", type=int, default=1,
                    help="hub serve processes on one PostgreSQL schema (ingest.py: on one shared port; "
                         "pipeline.py: each on its own; sqlite: 1)")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL, help="a server where the user may create schemas")
    ap.add_argument("--compare", action="store_true",
                    help="run " + ", ".join(label(k, n) for k, n in COMPARE) + " one after the other; one table")


def configurations(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, int]]:
    if args.compare:
        return list(COMPARE)
    if args.processes < 1:
        ap.error("--processes must be at least 1")
    if args.store == "sqlite" and args.processes > 1:
        ap.error("--processes > 1 needs --store postgres: one hub serve per SQLite file")
    return [(args.store, args.processes)]


def label(kind: str, processes: int) -> str:
    return f"{kind} x{processes}"


def schema_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema, dropped on the way out."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield schema_url(base, name)
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@contextlib.contextmanager
def location(kind: str, folder: Path, pg_url: str) -> Iterator[str]:
    """Where the hubs keep their store: a new SQLite file's path in ``folder``, or a fresh schema's URL."""
    if kind == "postgres":
        with fresh_schema(pg_url) as url:
            yield url
    else:
        folder.mkdir(parents=True, exist_ok=True)
        yield str(folder / "bench.db")


def storage_yaml(where: str) -> str:
    """The config's ``storage`` section (YAML flow style) for ``where``."""
    from hub.store import is_url

    return f'{{url: "{where}"}}' if is_url(where) else f"{{path: {where}}}"


def open_at(where: str) -> Any:
    from hub.store import open_store

    return open_store(where)


def close(store: Any) -> None:
    asyncio.run(store.close())


def count_events(where: str) -> int:
    """Events in the store, opened as a restarted hub would find it."""
    from hub.store import events

    store = open_at(where)
    try:
        return sum(events.counts(store.conn).values())
    finally:
        close(store)


def reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001  (any failure means: skip)
        return False


def exit_on_sigterm() -> None:
    """SIGTERM (``timeout``, a CI cancel) unwinds like Ctrl-C, through the ``finally`` that stops the children."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Procs:
    """The processes a bench started; ``close`` kills every one still running, with its session's children."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[Any]] = []

    def start(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.started.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
        """Signal the process's whole session (it leads it): its render-pool workers die with it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self, procs: list[subprocess.Popen[Any]], timeout: float = 30) -> None:
        """A graceful stop: SIGTERM to each process at once (each stops its own workers), once only (uvicorn takes
        a second one as "exit now"), then wait; SIGKILL for one that hangs."""
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def close(self) -> None:
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)  # also when the leader is gone but a worker is not
                proc.wait(timeout=10)
        self.started.clear()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-reachable", action="store_true", required=True)
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    sys.exit(0 if reachable(ap.parse_args().pg_url) else 1)
