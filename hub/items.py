"""From a claimed outbox row to the ``Item`` a connector sees: one function, used by the dispatcher's loop and by
the render process alike, so both hand a connector the same thing."""

from __future__ import annotations

from typing import Any

import orjson

from hub.connector import Item, Ref


def item_from(target: str, ident: str, kind: str, key: str, route: str, snapshot: str | None,
              event: dict[str, Any] | None, attempt: int, ref: Ref | None = None) -> Item:
    """``snapshot`` is the stored JSON of the finding step (``{"finding", "changes"}``, or ``{"finding",
    "delivery"}`` for a dead letter); ``event`` the public form of the stored event a raw delivery reads."""
    snap = orjson.loads(snapshot) if snapshot else {}
    return Item(ident, kind, key, route, target, snap.get("finding"), event, snap.get("changes") or {}, ref,
                attempt, snap.get("delivery"))
