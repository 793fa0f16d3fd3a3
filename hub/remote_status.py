"""Ticket states read back (the status sync job, or a vendor's webhook): stored, and a ticket the vendor's state
category calls closed resolves its open finding, with ``resolved_by`` and no echo to the ticket that closed it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from hub import lifecycle
from hub.config import SlaConfig
from hub.connector import RemoteStatus
from hub.ids import iso
from hub.recorder import Applied, Recorder
from hub.store import findings as finding_rows


class RemoteStatuses:
    def __init__(self, recorder: Recorder, sla: SlaConfig):
        self.recorder, self.sla = recorder, sla

    def apply(self, conn: sqlite3.Connection, target: str, statuses: Sequence[RemoteStatus], now: float,
              out: Applied | None = None) -> Applied:
        """Inside the caller's transaction; adds to ``out`` when given (an event's own changes)."""
        out = out if out is not None else Applied()
        stamp = iso(now)
        for st in statuses:
            finding_id = finding_rows.finding_for_remote(conn, target, st.remote_id)
            if finding_id is None:
                continue
            finding_rows.set_remote_status(conn, finding_id, target, st.status, stamp)
            existing = finding_rows.get(conn, finding_id)
            if not st.closed or existing is None or existing.status != "open":
                continue
            change = lifecycle.apply(existing, existing.model_copy(update={"status": "resolved"}), now, self.sla)
            change.changes.update(resolved_by=target, remote_status=st.status)
            self.recorder.record(conn, change, finding_rows.scope_of(conn, finding_id), None, f"target:{target}",
                                 stamp, out, exclude_target=target)
        return out
