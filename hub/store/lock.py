"""One ``hub serve`` per store: an exclusive lock on ``<db>.lock``, held for the life of the process.

Two processes serving one SQLite file would both run the pipeline and the dispatcher on the same rows:
deliveries claimed twice, group commits fighting for the write lock. The lock is ``flock`` on a file next to
the database, taken before the store opens; the kernel releases it when the process ends, however it ends
(SIGKILL, a crash), so a stale lock file never blocks a restart. The holder writes its pid into the file,
only to name it in the refusal. Commands that only read (``events list``, ``deliveries list``,
``check-config``, ...) do not take it and keep working while the hub runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from hub.errors import StoreError

_held: dict[Path, int] = {}  # lock file -> descriptor, kept open (and locked) until the process ends


class StoreLockedError(StoreError):
    """Another process serves this store; ``holder`` is its pid, when it wrote one."""

    def __init__(self, message: str, holder: int | None = None):
        super().__init__(message)
        self.holder = holder


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def hold(db: Path) -> Path:
    """Lock ``<db>.lock`` for the rest of this process's life; raises StoreLockedError when another holds it."""
    path = lock_path(db)
    if path in _held:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the store's lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        who = f"pid {holder}" if holder else "another process"
        raise StoreLockedError(f"{db} is already served by {who} (lock {path}); run one hub serve per database "
                               "file", holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = fd
    return path


def release(db: Path) -> None:
    """Let go early (tests; a process that exits releases by itself)."""
    fd = _held.pop(lock_path(db), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
