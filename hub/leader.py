"""Which process runs the work that must run once: a leader, by a PostgreSQL advisory lock.

Several ``hub serve`` processes on one PostgreSQL database all receive and all deliver, but event processing
(in order, per source) and the periodic jobs (polling, status sync, retention, SLA checks, the dead-letter report)
must run in one of them at a time. The leader is the process whose session holds the advisory lock
(``LOCK_CLASS``, ``hashtext(current_schema())``): one per schema, so two hubs in two schemas of one database each
have their own.
The lock lives with that session: when the leader dies, however it dies, PostgreSQL drops its connection and the
lock with it, and the next ``check`` of another process (every ``CHECK_SECS``) takes it.

On SQLite there is one process per store (hub/store/lock.py), which is always the leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hub.leader")
LOCK_CLASS = 0x68756201  # with the schema's hash, the advisory lock's two keys: one leader per hub schema
CHECK_SECS = 1.0
_TRY = "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))"


class Leadership:
    def __init__(self, url: str | None = None, *, on_change: Callable[[bool], None] | None = None):
        self.url = url
        self.on_change = on_change
        self.leader = url is None
        self._conn: Any = None

    def is_leader(self) -> bool:
        return self.leader

    async def check(self) -> bool:
        """Keep the lock, or take it if it is free; returns whether this process leads now."""
        if self.url is None:
            return True
        leads = await asyncio.to_thread(self._check)
        if leads != self.leader:
            self.leader = leads
            if leads:
                log.warning("this process is now the leader: it processes events and runs the periodic jobs")
            else:
                log.warning("this process is no longer the leader (its database session was lost)")
            if self.on_change is not None:
                self.on_change(leads)
        return leads

    def _check(self) -> bool:
        import psycopg

        assert self.url is not None
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                             application_name="findings-hub leader")
                return bool(self._conn.execute(_TRY, (LOCK_CLASS,)).fetchone()[0])
            if self.leader:  # the session still holds the lock as long as it is alive
                self._conn.execute("SELECT 1")
                return True
            return bool(self._conn.execute(_TRY, (LOCK_CLASS,)).fetchone()[0])
        except psycopg.Error as exc:
            log.warning("leadership check failed: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return False

    async def close(self) -> None:
        """Give the lock up (closing the session does): another process takes it at its next check."""
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None
        self.leader = self.url is None
