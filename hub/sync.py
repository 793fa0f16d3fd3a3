"""Status sync-back: read the state of linked tickets and resolve findings a human closed.

A periodic job per ``SupportsStatus`` target pages through the open findings linked to it (in
batches the vendor can answer in one request), asks the connector for the tickets' states, stores
each ticket's status and, when the vendor's *state category* says closed, resolves the finding with
history ``resolved_by: <target>``. The resulting ``finding.resolved`` goes to every other matching
target, never back to the ticket that closed it (no echo). Vendor webhooks (Linear's signed ones)
take the same path at once through an adapter that yields ``RemoteStatus`` updates.

A connector that reads "what changed since the last run" (Freshservice) is ``SupportsSyncBookmark``: its
bookmark is kept in ``sync_state`` under ``sync:<target>`` and replaced only after a run without errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial

import httpx

from hub.connector import RemoteStatus, SupportsStatus, SupportsSyncBookmark
from hub.ids import iso
from hub.recorder import Applied
from hub.store import Store, sync_state
from hub.store import findings as finding_rows
from hub.store.conn import Conn

log = logging.getLogger("hub.sync")
PAGE = 50

ApplyStatuses = Callable[[Conn, str, Sequence[RemoteStatus], float], Applied]


@dataclass
class SyncReport:
    checked: int = 0
    resolved: int = 0
    errors: int = 0


class StatusSync:
    """One target's sync job. ``client`` lends one of the target's HTTP clients; ``apply`` stores the states read
    (``RemoteStatuses.apply``, in one write per page); ``on_deliveries`` is told the targets given new rows."""

    def __init__(self, target: str, connector: SupportsStatus, store: Store, *, clock: Callable[[], float],
                 client: Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]], apply: ApplyStatuses,
                 on_deliveries: Callable[[set[str]], None]):
        self.target, self.connector, self.store, self.clock = target, connector, store, clock
        self.client, self.apply, self.on_deliveries = client, apply, on_deliveries

    async def run(self) -> SyncReport:
        """One sync run; stops at the first vendor error (the next run starts over)."""
        target, connector = self.target, self.connector
        report = SyncReport()
        after = ""
        batch = getattr(connector, "status_batch", PAGE)
        bookmark = connector if isinstance(connector, SupportsSyncBookmark) else None
        if bookmark is not None:
            bookmark.begin_sync(sync_state.get(self.store.conn, f"sync:{target}"), self.clock())
        while True:
            refs = finding_rows.linked_refs(self.store.conn, target, after, batch)
            if not refs:
                break
            after = refs[-1].finding_id
            try:
                async with self.client() as client:
                    statuses = await connector.read_status(client, refs)
            except Exception as exc:  # noqa: BLE001  (one target's failed read must not stop the sync job)
                report.errors += 1
                log.warning("sync %s: reading ticket status failed, will retry next run: %s", target, exc)
                break
            report.checked += len(refs)
            now = self.clock()
            applied = await self.store.write(lambda conn, s=statuses, t=now: self.apply(conn, target, s, t))  # type: ignore[misc]
            report.resolved += applied.kinds.get("finding.resolved", 0)
            if applied.targets:
                self.on_deliveries(applied.targets)
        if bookmark is not None and (saved := bookmark.end_sync()) is not None and not report.errors:
            await self.store.write(partial(sync_state.put, key=f"sync:{target}", value=saved, now=iso(self.clock())))
        if report.resolved:
            log.info("sync %s: %d ticket(s) checked, %d finding(s) resolved by their ticket", target,
                     report.checked, report.resolved)
        return report
