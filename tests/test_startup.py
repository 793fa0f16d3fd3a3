"""`hub serve` on a store it cannot write: one line naming the path, a non-zero exit, no traceback.

Tests run as root, for whom a chmod'ed folder is still writable; a read-only tmpfs is what really refuses
writes (skipped where the sandbox cannot mount). A store path under a regular file (mkdir fails) covers
the "folder cannot be made" case everywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import base_config, write_config


def _serve(tmp_path: Path, db: Path) -> subprocess.CompletedProcess[str]:
    data = base_config(tmp_path)
    data["storage"]["path"] = str(db)
    config = write_config(tmp_path / "hub.yaml", data)
    return subprocess.run([sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", "1"],
                          capture_output=True, text=True, timeout=30)


def _one_line_naming(out: subprocess.CompletedProcess[str], path: Path) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], out.stderr


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (not root, or no CAP_SYS_ADMIN): {done.stderr.strip()}")


@pytest.mark.slow
def test_a_store_on_a_read_only_filesystem_is_one_line_at_start(tmp_path):
    """The hard case: the database opens (a crash left its -wal and -shm, so SQLite opens it read-only and the
    migrations are already applied), and only the first write fails, which used to be a lifespan traceback."""
    folder = tmp_path / "ro"
    folder.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder))
    try:
        db = folder / "hub.db"
        crash = ("import os, sys; from hub.store import SqliteStore, sync_state; s = SqliteStore(sys.argv[1]); "
                 "sync_state.put(s.conn, 'k', {}, 'now'); os._exit(0)")
        subprocess.run([sys.executable, "-c", crash, str(db)], check=True, timeout=30)
        assert (folder / "hub.db-wal").exists()
        _mount("-o", "remount,ro", str(folder))
        _one_line_naming(_serve(tmp_path, db), db)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


@pytest.mark.slow
def test_a_store_folder_that_cannot_be_made_is_one_line_at_start(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    db = tmp_path / "a-file" / "hub.db"
    _one_line_naming(_serve(tmp_path, db), db)
