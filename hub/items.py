"""From a claimed outbox row to the ``Item`` a connector sees: one function, used by the dispatcher's loop and by
the render process alike, so both hand a connector the same thing."""

from __future__ import annotations

import orjson

from hub.connector import Item, Ref
from hub.store.deliveries import ClaimedDelivery
from hub.store.events import EventRow


def item_from(target: str, row: ClaimedDelivery, event: EventRow | None, ref: Ref | None = None) -> Item:
    """``row.snapshot`` is the stored JSON of the finding step (``{"finding", "changes"}``, or ``{"finding",
    "delivery"}`` for a dead letter); ``event`` the stored event a raw (``event.received``) delivery reads."""
    snap = orjson.loads(row.snapshot) if row.snapshot else {}
    return Item(row.id, row.kind, row.idempotency_key, row.route, target, snap.get("finding"),
                event.event().public() if event is not None else None, snap.get("changes") or {}, ref,
                row.attempts, snap.get("delivery"))
