"""Ticket states read back (the status sync job, or a vendor's webhook): stored, and a ticket the vendor's state
category calls closed resolves its open finding, with ``resolved_by`` and no echo to the ticket that closed it.

A ticket in one of its target's ``sync.dismiss_states`` (a person closed it as "won't fix", "accepted risk")
dismisses the finding instead, with ``dismissed_by``, the ticket's state and id: that step goes where routes send
``finding.dismissed`` (the source platform's write-back), never back to the ticket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hub import lifecycle
from hub.config import SlaConfig
from hub.connector import RemoteStatus, TargetConfig
from hub.ids import iso
from hub.recorder import Applied, Recorder
from hub.store import findings as finding_rows
from hub.store.conn import Conn


def dismiss_states(targets: Mapping[str, TargetConfig]) -> dict[str, frozenset[str]]:
    """Each target's ``sync.dismiss_states``, case-folded (vendors' state names differ in case between screens)."""
    out = {}
    for name, cfg in targets.items():
        states = getattr(getattr(cfg, "sync", None), "dismiss_states", None)
        if states:
            out[name] = frozenset(s.strip().casefold() for s in states)
    return out


class RemoteStatuses:
    def __init__(self, recorder: Recorder, sla: SlaConfig, dismiss: Mapping[str, frozenset[str]] | None = None):
        self.recorder, self.sla, self.dismiss = recorder, sla, dismiss or {}

    def apply(self, conn: Conn, target: str, statuses: Sequence[RemoteStatus], now: float,
              out: Applied | None = None) -> Applied:
        """Inside the caller's transaction; adds to ``out`` when given (an event's own changes)."""
        out = out if out is not None else Applied()
        stamp = iso(now)
        dismissing = self.dismiss.get(target, frozenset())
        for st in statuses:
            finding_id = finding_rows.finding_for_remote(conn, target, st.remote_id)
            if finding_id is None:
                continue
            finding_rows.set_remote_status(conn, finding_id, target, st.status, stamp)
            existing = finding_rows.get(conn, finding_id)
            if existing is None or existing.status != "open":
                continue
            if st.status.strip().casefold() in dismissing:
                change = lifecycle.dismiss(existing, now)
                change.changes.update(dismissed_by=target, remote_status=st.status, remote_id=st.remote_id)
            elif st.closed:
                change = lifecycle.apply(existing, existing.model_copy(update={"status": "resolved"}), now, self.sla)
                change.changes.update(resolved_by=target, remote_status=st.status)
            else:
                continue
            self.recorder.record(conn, change, finding_rows.scope_of(conn, finding_id), None, f"target:{target}",
                                 stamp, out, exclude_target=target)
        return out
