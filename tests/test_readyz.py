"""`/readyz` fails while writes fail and recovers after: with an injected SQLITE_FULL, and with a real full disk
(a small tmpfs, when the sandbox lets the tests mount one)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import base_config, served_in_process, write_config


class FullDisk:
    """The writer's connection on a disk with no free page: a COMMIT that must write pages fails with
    SQLITE_FULL, while a transaction that changed nothing commits (it writes nothing), as on a real full disk."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn, self.full, self._changes = conn, False, 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "BEGIN IMMEDIATE":
            self._changes = self.conn.total_changes
        elif sql == "COMMIT" and self.full and self.conn.total_changes != self._changes:
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@contextlib.asynccontextmanager
async def _client(tmp_path: Path, db: Path | None = None) -> Any:
    data = base_config(tmp_path)
    if db is not None:
        data["storage"]["path"] = str(db)
    async with served_in_process(write_config(tmp_path / "hub.yaml", data), scheduler=False) as served:
        yield served


async def _post(client: httpx.AsyncClient, n: int) -> int:
    import hashlib
    import hmac

    from tests.support import HMAC_SECRET

    body = b'{"n": %d}' % n
    sig = hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-se-signature": sig}
    r = await client.post("/hooks/se", content=body, headers=headers)
    return r.status_code


@pytest.mark.sqlite_only  # a SQLite file's failing pages; PostgreSQL's own disk is not the hub's to fill
async def test_readyz_fails_while_commits_that_write_pages_fail_and_recovers_after(tmp_path):
    async with _client(tmp_path) as (hub, client):
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["leader"] is True  # one process on SQLite: it leads
        disk = FullDisk(hub.store.writer.conn)
        hub.store.writer.conn = disk  # type: ignore[assignment]
        disk.full = True
        assert await _post(client, 1) == 503  # events cannot be written ...
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["store"] is False  # ... and readyz says so
        disk.full = False
        assert (await client.get("/readyz")).status_code == 200
        assert await _post(client, 2) == 202


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.sqlite_only
async def test_readyz_on_a_real_full_disk(tmp_path):
    mount = tmp_path / "small"
    with _tmpfs(mount, "2m"):
        async with _client(tmp_path, mount / "hub.db") as (_, client):
            assert (await client.get("/readyz")).status_code == 200
            filler = _fill(mount)
            assert await _post(client, 1) == 503
            assert (await client.get("/readyz")).status_code == 503
            filler.unlink()
            assert (await client.get("/readyz")).status_code == 200
            assert await _post(client, 2) == 202
