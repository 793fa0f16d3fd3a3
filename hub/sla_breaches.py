"""The SLA job: open findings past their due date are marked breached and routed ``finding.sla_breached``, once each.
(``hub/sla.py`` reports on SLAs; this module acts on them.)"""

from __future__ import annotations

from collections.abc import Callable

from hub.ids import iso
from hub.recorder import Applied, Recorder
from hub.store import Store
from hub.store import findings as finding_rows
from hub.store.conn import Conn


class SlaBreaches:
    def __init__(self, store: Store, recorder: Recorder, clock: Callable[[], float],
                 on_deliveries: Callable[[set[str]], None]):
        self.store, self.recorder, self.clock, self.on_deliveries = store, recorder, clock, on_deliveries

    async def check(self) -> int:
        """Mark and route the findings whose SLA date has passed; returns how many."""
        now = self.clock()
        due = await self.store.peek(lambda conn: finding_rows.due_for_sla(conn, iso(now)))
        if not due:
            return 0

        def job(conn: Conn) -> Applied:
            out, stamp = Applied(), iso(now)
            for f in due:
                finding_rows.mark_sla_breached(conn, f.id, stamp)
                step = finding_rows.add_history(conn, f.id, stamp, "finding.sla_breached",
                                                {"sla_due_at": f.sla_due_at}, None, "sla")
                self.recorder.route(conn, "finding.sla_breached", f, {"sla_due_at": f.sla_due_at}, f.source, step,
                                    stamp, out)
            return out

        applied = await self.store.write(job)
        if applied.targets:
            self.on_deliveries(applied.targets)
        return len(due)
