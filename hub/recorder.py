"""Recording one lifecycle change: the finding row, its history step, and the outbox rows its routes ask for.

Every writer of findings goes through here (an event's findings, a ticket's status read back, an SLA breach), inside
the caller's transaction, so a change and the deliveries it causes commit together or not at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub import lifecycle
from hub.models import SYNCED_KINDS, Finding
from hub.routing import Router
from hub.store import deliveries as outbox
from hub.store import findings as finding_rows
from hub.store.conn import Conn


def delivery_key(route: str, target: str, what: str) -> str:
    """Idempotency key per (route, target, finding step or event): sent as webhook-id, _id, ... by connectors."""
    return "fh_" + hashlib.sha256(f"{route}\x1f{target}\x1f{what}".encode()).hexdigest()[:40]


@dataclass
class Applied:
    """What one transaction changed: findings saved, lifecycle steps by kind, and the targets given deliveries."""

    targets: set[str] = field(default_factory=set)
    findings: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


class Recorder:
    """``ticket_targets``: the targets whose connector keeps one remote object per finding (external_refs)."""

    def __init__(self, router: Router, ticket_targets: frozenset[str]):
        self.router = router
        self.ticket_targets = ticket_targets

    def record(self, conn: Conn, change: lifecycle.Change, scope: str | None, event_id: str | None,
               actor: str, stamp: str, out: Applied, exclude_target: str | None = None) -> None:
        """Store a lifecycle change, its history, and the outbox rows its routes ask for."""
        f = change.finding
        finding_rows.save(conn, f, scope, stamp)
        out.findings += 1
        if change.kind:
            label = change.kind
        elif change.created:
            label = "finding.recorded"  # first seen already resolved: kept, nothing to deliver
        elif change.changes:
            label = "finding.changed"  # e.g. a resolved finding's fields changed
        else:
            return  # seen again, identical
        step = finding_rows.add_history(conn, f.id, stamp, label, change.changes, event_id, actor)
        if change.kind is None:
            return
        out.kinds[change.kind] = out.kinds.get(change.kind, 0) + 1
        self.route(conn, change.kind, f, change.changes, actor, step, stamp, out, exclude_target)

    def route(self, conn: Conn, kind: str, f: Finding, changes: dict[str, Any], source: str, step: int,
              stamp: str, out: Applied, exclude_target: str | None = None) -> None:
        """The outbox rows for one finding step: every matching route's target, and the targets it is linked at."""
        if not self.router.wants(kind):
            return
        data = f.model_dump(mode="json")
        pairs = self.router.match(kind, f.source or source, {"finding": data, "changes": changes, "kind": kind})
        pairs += self._still_linked(conn, kind, f.id, f.source or source, pairs)
        pairs = [(r, t) for r, t in pairs if t != exclude_target]  # no echo to the ticket that caused it
        if not pairs:
            return
        snapshot = orjson.dumps({"finding": data, "changes": changes}).decode()
        rows = [outbox.NewDelivery(r, t, kind, f.id, None, f.id, delivery_key(r, t, f"step:{step}"), snapshot)
                for r, t in pairs]
        outbox.insert(conn, rows, stamp)
        out.targets |= {t for _, t in pairs}

    def _still_linked(self, conn: Conn, kind: str, finding_id: str, source: str,
                      matched: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Once linked, always synced: a finding with a ticket at a target keeps getting its lifecycle there
        (updated, resolved, reopened, sla_breached) when no route's ``when`` matches it any more, through the
        first route from its source to that target that takes the kind. Otherwise a critical that drops to
        high is resolved in the hub while its ticket stays open forever."""
        if kind not in SYNCED_KINDS:
            return []
        done = {t for _, t in matched}
        out = []
        for route, target in self.router.reaching(kind, source):
            if target in done or target not in self.ticket_targets:
                continue
            done.add(target)
            if finding_rows.linked(conn, finding_id, target):
                out.append((route, target))
        return out
