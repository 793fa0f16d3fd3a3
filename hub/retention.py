"""Periodic housekeeping: prune old finished traffic.

``prune`` walks deliveries, then events, then the audit log, a range at a time (hub/store/retention.py); each range is
one short write of its own, so intake and delivery keep going while it runs. (What waits in the dead-letter queue
is reported by hub/dead_letters.py.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from hub.config import RetentionConfig
from hub.ids import iso
from hub.store import Store, replays
from hub.store import retention as rows

log = logging.getLogger("hub.retention")
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Pruned:
    deliveries: int
    events: int
    audit: int = 0


def _before(now: float, days: float | None) -> str | None:
    return iso(now - days * DAY) if days else None


async def prune(store: Store, cfg: RetentionConfig, now: float,
                progress: Callable[[int], None] | None = None) -> Pruned:
    """Delete what the retention settings let go of; returns how many rows went. ``progress(n)`` is told how many
    seqs each range walked (the whole rest of a table when its walk ends early), out of ``rows.extent``."""
    done, dead = _before(now, cfg.deliveries_days), _before(now, cfg.dead_days)
    processed, audited = _before(now, cfg.events_days), _before(now, cfg.audit_days)
    counts = []
    for step, cutoffs in ((rows.deliveries_step, (done, dead)), (rows.events_step, (processed, dead)),
                          (rows.audit_step, (audited,))):
        total, after = 0, 0
        walked: int | None = 0
        while walked is not None and any(cutoffs):
            result = await store.write(lambda conn, a=after, s=step, c=cutoffs: s(conn, a, *c))  # type: ignore[misc]
            total, walked = total + result.deleted, result.next_seq
            if progress is not None and walked is not None:
                progress(walked - after)
            after = walked if walked is not None else after
            await asyncio.sleep(0)  # let other writes in between ranges
        counts.append(total)
    gone = replays.STEP
    while gone == replays.STEP:  # expired replay-guard digests, a range at a time like the rest
        gone = await store.write(lambda conn: replays.prune_step(conn, now))
    pruned = Pruned(*counts)
    if pruned.deliveries or pruned.events or pruned.audit:
        log.info("retention: pruned %d deliveries, %d events and %d audit rows", pruned.deliveries, pruned.events,
                 pruned.audit)
    return pruned
