"""One `hub serve` per store: a second one on the same SQLite file refuses with one clear line, read-only commands
keep working beside the running hub, and a SIGKILLed hub's lock is gone with it (real processes, bounded)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.store.lock import hold, lock_path, release
from tests.support import HubProcess, base_config, free_port, write_config


@pytest.mark.slow
@pytest.mark.sqlite_only  # one serve per SQLite file; PostgreSQL takes several
def test_a_second_serve_on_the_same_store_refuses_and_a_killed_hubs_lock_dies_with_it(tmp_path):
    config = write_config(tmp_path / "hub.yaml", base_config(tmp_path))
    db = tmp_path / "hub.db"
    first = HubProcess(config).start()
    try:
        assert first.proc is not None
        second = subprocess.run([sys.executable, "-m", "hub", "serve", "--config", str(config), "--port",
                                 str(free_port())], capture_output=True, text=True, timeout=20)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"error: {db} is already served by pid {first.proc.pid} (lock {lock_path(db)}); "
            "run one hub serve per database file"]
        for args in (["events", "list"], ["deliveries", "list"], ["check-config"]):
            result = CliRunner().invoke(main, [*args, "--config", str(config)])
            assert result.exit_code == 0, (args, result.output)
    finally:
        first.kill(signal.SIGKILL)
    with HubProcess(config) as again:  # no stale lock: the kernel released it with the killed process
        assert again.proc is not None and again.proc.poll() is None
        assert lock_path(db).read_text().strip() == str(again.proc.pid)


def test_the_lock_is_refused_to_another_descriptor_and_free_after_release(tmp_path):
    """flock belongs to the open file, not the process: a second open in this process is refused too."""
    import fcntl
    import os

    db = tmp_path / "sub" / "hub.db"
    path = hold(db)
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert hold(db) == path  # holding it again in the same process is a no-op
    finally:
        release(db)
    assert hold(db) == path
    release(db)


def test_a_lock_file_that_cannot_be_created_is_a_store_error_naming_it(tmp_path):
    from hub.errors import StoreError

    (tmp_path / "file").write_text("")
    db = tmp_path / "file" / "hub.db"  # its folder is a file
    with pytest.raises(StoreError, match=f"^cannot open the store's lock file {re.escape(str(lock_path(db)))}: "):
        hold(db)
