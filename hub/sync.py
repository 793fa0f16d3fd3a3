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
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from hub.connector import SupportsStatus, SupportsSyncBookmark
from hub.ids import iso
from hub.store import findings as finding_rows
from hub.store import sync_state

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger("hub.sync")
PAGE = 50


@dataclass
class SyncReport:
    checked: int = 0
    resolved: int = 0
    errors: int = 0


async def sync_target(hub: Hub, target: str) -> SyncReport:
    """One sync run for one target; stops at the first vendor error (the next run starts over)."""
    worker = hub.dispatcher.workers[target]
    connector = worker.connector
    report = SyncReport()
    if not isinstance(connector, SupportsStatus):
        return report
    after = ""
    batch = getattr(connector, "status_batch", PAGE)
    bookmark = connector if isinstance(connector, SupportsSyncBookmark) else None
    if bookmark is not None:
        bookmark.begin_sync(sync_state.get(hub.store.conn, f"sync:{target}"), hub.clock())
    while True:
        refs = finding_rows.linked_refs(hub.store.conn, target, after, batch)
        if not refs:
            break
        after = refs[-1].finding_id
        try:
            async with worker.client() as client:
                statuses = await connector.read_status(client, refs)
        except Exception as exc:  # noqa: BLE001  (one target's failed read must not stop the sync job)
            report.errors += 1
            log.warning("sync %s: reading ticket status failed, will retry next run: %s", target, exc)
            break
        report.checked += len(refs)
        now = hub.clock()
        outcome = await hub.store.write(partial(hub.pipeline.apply_remote, target=target, statuses=statuses, now=now))
        report.resolved += outcome.kinds.get("finding.resolved", 0)
        if outcome.targets:
            hub.dispatcher.wake(outcome.targets)
    if bookmark is not None and (saved := bookmark.end_sync()) is not None and not report.errors:
        await hub.store.write(partial(sync_state.put, key=f"sync:{target}", value=saved, now=iso(hub.clock())))
    if report.resolved:
        log.info("sync %s: %d ticket(s) checked, %d finding(s) resolved by their ticket", target, report.checked,
                 report.resolved)
    return report
