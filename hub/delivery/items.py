"""What a connector is handed for claimed rows: Items built in the loop, or bytes encoded by the render process.

A ticket target's item carries its link (``external_refs``): the link row is written before the create call, so a
crash between the call and the verdict cannot make a second ticket. Raw ``event.received`` rows carry no snapshot;
their stored events are read in one query per claim.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prometheus_client import Counter

from hub.connector import Connector, Item, Verdict
from hub.ids import iso
from hub.items import item_from
from hub.render_pool import RenderPool
from hub.store import Store
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store.deliveries import ClaimedDelivery
from hub.store.events import EventRow


class ItemSource:
    def __init__(self, target: str, connector: Connector, store: Store, clock: Callable[[], float],
                 render_pool: RenderPool | None, rendered: Counter):
        self.target, self.connector, self.store, self.clock = target, connector, store, clock
        self.render_pool = render_pool
        self._rendered = {where: rendered.labels(target, where) for where in ("process", "loop")}

    async def items(self, rows: list[ClaimedDelivery]) -> list[Item]:
        """One Item per row, built here; a ticket target's rows get their link (made now if there is none)."""
        events = self._events(rows)
        items = []
        for r in rows:
            ref = None
            if self.connector.work_items and r.finding_id:
                ref = finding_rows.ref(self.store.conn, r.finding_id, self.target)
                if ref is None:  # the link row goes to disk before the create call
                    fid, stamp = r.finding_id, iso(self.clock())
                    ref = await self.store.write(partial(finding_rows.claim_ref, finding_id=fid, target=self.target,
                                                         now=stamp))
            items.append(item_from(self.target, r, events.get(r.event_id) if r.event_id else None, ref))
        return items

    async def encoded(self, rows: list[ClaimedDelivery]) -> tuple[list[Item], list[Verdict | None]]:
        """The items to send, encoded by the render process when it takes this batch, and a slot per row: None
        for a row that is sent, a PERMANENT verdict for a row whose template failed there."""
        pool = self.render_pool
        encoded = None
        if pool is not None and pool.wants(self.target, len(rows)):
            events = self._events(rows)
            encoded = await pool.encode(self.target, [(r, events.get(r.event_id) if r.event_id else None)
                                                      for r in rows])
        if encoded is None:  # small batch, no pool, or the child died: encode here
            self._rendered["loop"].inc()
            return await self.items(rows), [None] * len(rows)
        self._rendered["process"].inc()
        items: list[Item] = []
        slots: list[Verdict | None] = []
        for r, data in zip(rows, encoded, strict=True):
            if isinstance(data, Verdict):
                slots.append(data)
                continue
            slots.append(None)
            items.append(Item(r.id, r.kind, r.idempotency_key, r.route, self.target, attempt=r.attempts,
                              encoded=data))
        return items, slots

    def _events(self, rows: list[ClaimedDelivery]) -> dict[str, EventRow]:
        """Stored events read by raw ``event.received`` rows (they carry no snapshot), by event id."""
        ids = [r.event_id for r in rows if r.event_id and r.snapshot is None]
        return event_rows.by_ids(self.store.conn, ids) if ids else {}
