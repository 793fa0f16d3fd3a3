"""Deduplication and lifecycle as pure functions: fingerprints, what changed, SLA dates.

new -> ``finding.created``; changed tracked fields -> ``finding.updated``; reported fixed (or absent
from a full re-import) -> ``finding.resolved``; seen again after resolution -> ``finding.reopened``;
identical -> nothing. Events are often partial (a "resolved" webhook carries only an id), so an empty
value in the incoming finding never erases a stored one.

A ticket closed by a person in a "won't fix" state -> ``finding.dismissed`` (``dismiss``). Reports do not undo a
person's decision: a dismissed finding stays dismissed until its source says it is new again, that is, reports it
with an open status after having reported it closed (resolved or dismissed) since the dismissal. Its
``resolved_at`` is the time of that closing report (None until then), which is all the memory the rule needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub.config import FingerprintConfig, SlaConfig
from hub.ids import iso, new_id, parse_iso
from hub.models import TRACKED_FIELDS, Finding


@dataclass(frozen=True)
class Change:
    kind: str | None  # the event to route, or None when nothing worth delivering happened
    finding: Finding  # the state to store
    changes: dict[str, Any] = field(default_factory=dict)  # field -> {"old": .., "new": ..}
    created: bool = False


def _path(f: Finding, dotted: str) -> Any:
    value: Any = f
    for part in dotted.split("."):
        value = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
    return value


def fingerprint(f: Finding, source: str, cfg: FingerprintConfig | None = None) -> str:
    """Stable identity of a finding within its fingerprint scope (hex, 32 chars). The scope is the source's name
    unless ``cfg.scope`` names one shared by several sources, so a source named like its scope keeps the
    fingerprints it had before the scope was added."""
    cfg = cfg or FingerprintConfig()
    use = cfg.use
    if use in ("tool_id", "both") and not f.tool_id:
        use = "fields" if use == "both" else "default"
    if use == "tool_id":
        parts: list[Any] = ["tool", f.tool_id]
    elif use in ("fields", "both"):
        parts = ["fields", *(_path(f, name) for name in cfg.fields)]
        if use == "both":
            parts.append(f.tool_id)
    else:
        what = f.rule_id or (f.cve[0] if f.cve else None) or f.title.strip().lower()
        parts = ["default", f.asset.identifier or f.asset.hostname or f.asset.ip, what, f.location]
    digest = hashlib.sha256(orjson.dumps([cfg.scope or source, *parts], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return digest[:32]


def scope_peers(configs: Mapping[str, FingerprintConfig]) -> dict[str, frozenset[str]]:
    """Each source's fellow sources in its fingerprint scope (none without a shared scope): a full re-import of one
    source does not resolve a finding that a peer reports."""
    members: dict[str, set[str]] = {}
    for name, cfg in configs.items():
        if cfg.scope is not None:
            members.setdefault(cfg.scope, set()).add(name)
    return {name: frozenset(members[cfg.scope] - {name}) for name, cfg in configs.items() if cfg.scope is not None}


def sla_due(severity: str, start: str | None, sla: SlaConfig) -> str | None:
    days = getattr(sla, severity, None)
    if days is None or start is None:
        return None
    return iso(parse_iso(start) + days * 86400)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _merge(old: Finding, new: Finding) -> tuple[Finding, dict[str, Any]]:
    """The stored finding updated with every non-empty incoming value; and what changed."""
    updates: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for name in TRACKED_FIELDS:
        incoming = getattr(new, name)
        if name == "asset":
            merged = {**old.asset.model_dump(), **{k: v for k, v in incoming.model_dump().items() if not _empty(v)}}
            if merged != old.asset.model_dump():
                updates["asset"] = merged
                changes["asset"] = {"old": old.asset.model_dump(), "new": merged}
            continue
        if name == "severity" and "severity" not in new.model_fields_set:
            continue  # the adapter did not say: keep the stored severity
        if _empty(incoming) or incoming == getattr(old, name):
            continue
        updates[name] = incoming
        changes[name] = {"old": getattr(old, name), "new": incoming}
    if new.raw:
        updates["raw"] = new.raw
    if new.tool_id and not old.tool_id:
        updates["tool_id"] = new.tool_id
    return old.model_copy(update=updates), changes


def apply(existing: Finding | None, incoming: Finding, now: float, sla: SlaConfig) -> Change:
    """Decide what an incoming report means for the stored finding (None: first time seen)."""
    stamp = iso(now)
    if existing is None:
        title = incoming.title or f"{incoming.scanner or incoming.source} finding {incoming.tool_id or ''}".strip()
        first = incoming.first_seen or stamp
        opened = incoming.status == "open"
        f = incoming.model_copy(update={
            "id": new_id("fnd", now), "title": title, "first_seen": first, "last_seen": stamp,
            "resolved_at": None if opened else stamp, "sla_due_at": sla_due(incoming.severity, first, sla)})
        return Change("finding.created" if opened else None, f, {}, created=True)

    merged, changes = _merge(existing, incoming)
    update: dict[str, Any] = {"last_seen": stamp}
    if "severity" in changes and merged.status == "open":
        update["sla_due_at"] = sla_due(merged.severity, merged.first_seen, sla)
    kind: str | None = "finding.updated" if changes else None
    if existing.status == "dismissed":
        kind = None  # a human decided: field changes are recorded, nothing is delivered
        if incoming.status != "open" and existing.resolved_at is None:
            update["resolved_at"] = stamp  # the source says closed too (the write-back arrived, or it was fixed)
            changes["source_status"] = {"old": None, "new": incoming.status}
        elif "status" in incoming.model_fields_set and incoming.status == "open" and existing.resolved_at:
            # new again at the source: it says open (a report that names no status says nothing)
            kind, update["status"], update["resolved_at"] = "finding.reopened", "open", None
            update["sla_due_at"] = sla_due(merged.severity, stamp, sla)
            changes["status"] = {"old": "dismissed", "new": "open"}
    elif existing.status == "open" and incoming.status == "resolved":
        kind, update["status"], update["resolved_at"] = "finding.resolved", "resolved", stamp
        changes["status"] = {"old": "open", "new": "resolved"}
    elif existing.status == "resolved" and incoming.status == "open":
        kind, update["status"], update["resolved_at"] = "finding.reopened", "open", None
        update["sla_due_at"] = sla_due(merged.severity, stamp, sla)
        changes["status"] = {"old": "resolved", "new": "open"}
    elif existing.status == "resolved":
        kind = None  # still resolved: field changes are recorded, nothing is delivered
    if "sla_due_at" in update and update["sla_due_at"] != existing.sla_due_at:
        # a new due date is news for the ticket (Linear dueDate, Freshservice due_by, monday and Notion dates)
        changes["sla_due_at"] = {"old": existing.sla_due_at, "new": update["sla_due_at"]}
    return Change(kind, merged.model_copy(update=update), changes)


def resolve_absent(existing: Finding, now: float, reason: str) -> Change:
    """A finding missing from a full re-import of its scope."""
    stamp = iso(now)
    f = existing.model_copy(update={"status": "resolved", "resolved_at": stamp, "last_seen": existing.last_seen})
    return Change("finding.resolved", f, {"status": {"old": "open", "new": "resolved"}, "reason": reason})


def dismiss(existing: Finding, now: float) -> Change:
    """An open finding whose ticket a person closed as not to be fixed. ``resolved_at`` stays empty: it records when
    the source, too, calls the finding closed (see the module's docstring)."""
    f = existing.model_copy(update={"status": "dismissed", "resolved_at": None})
    return Change("finding.dismissed", f, {"status": {"old": "open", "new": "dismissed"}})
