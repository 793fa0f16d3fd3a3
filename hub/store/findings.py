"""Queries on ``findings``, ``finding_history`` and ``external_refs``."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import orjson

from hub.connector import Ref
from hub.models import ExternalRef, Finding
from hub.store._rows import given
from hub.store._rows import rows as _rows
from hub.store.conn import Conn
from hub.store.dialect import json_items, json_text
from hub.store.keyset import Sort, keyset

_JSON = {"cve": "cve", "cwe": "cwe", "attack_techniques": "attack_techniques", "asset": "asset",
         "references": "refs", "raw": "raw"}
_PLAIN = ("id", "fingerprint", "source", "scanner", "tool_id", "title", "severity", "cvss_score", "rule_id",
          "location", "description", "remediation", "status", "first_seen", "last_seen", "resolved_at", "sla_due_at")
_COLUMNS = (*_PLAIN, *_JSON.values(), "scope", "updated_at")
# A due date moved into the future (a reopen, a lowered severity) clears the breach mark, so the breach job
# notices the new date when it passes; one moved but still past (a raised severity) keeps it: no second notice.
# "Moved" compares with coalesce: SQLite's `IS NOT` is no PostgreSQL operator, and `IS DISTINCT FROM` needs SQLite 3.39.
_REARM = ("sla_breached_at = CASE WHEN coalesce(excluded.sla_due_at, '') <> coalesce(findings.sla_due_at, '') "
          "AND excluded.sla_due_at > excluded.updated_at THEN NULL ELSE findings.sla_breached_at END")
_UPSERT = (f"INSERT INTO findings ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
           f"ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
           + ", " + _REARM)


def from_row(row: dict[str, Any]) -> Finding:
    data = {k: row[k] for k in _PLAIN}
    for field, column in _JSON.items():
        data[field] = orjson.loads(row[column])
    return Finding.model_validate(data)



def by_fingerprint(conn: Conn, fingerprint: str) -> Finding | None:
    rows = _rows(conn.execute("SELECT * FROM findings WHERE fingerprint = ?", (fingerprint,)))
    return from_row(rows[0]) if rows else None


def get(conn: Conn, finding_id: str) -> Finding | None:
    rows = _rows(conn.execute("SELECT * FROM findings WHERE id = ?", (finding_id,)))
    if not rows:
        return None
    finding = from_row(rows[0])
    return finding.model_copy(update={"external_refs": external_refs(conn, finding_id)})


def save(conn: Conn, f: Finding, scope: str | None, now: str) -> None:
    values = [getattr(f, k) for k in _PLAIN]
    values += [orjson.dumps(getattr(f, field) if field != "asset" else f.asset.model_dump()).decode()
               for field in _JSON]
    conn.execute(_UPSERT, (*values, scope, now))


def scope_of(conn: Conn, finding_id: str) -> str | None:
    row = conn.execute("SELECT scope FROM findings WHERE id = ?", (finding_id,)).fetchone()
    return row[0] if row else None


def add_history(conn: Conn, finding_id: str, at: str, kind: str, changes: dict[str, Any],
                event_id: str | None, actor: str) -> int:
    return int(conn.execute("INSERT INTO finding_history (finding_id, at, event_type, changes, event_id, actor) "
                            "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                            (finding_id, at, kind, orjson.dumps(changes, default=str).decode(), event_id,
                             actor)).fetchone()[0])


def history(conn: Conn, finding_id: str) -> list[dict[str, Any]]:
    rows = _rows(conn.execute("SELECT seq, at, event_type, changes, event_id, actor FROM finding_history "
                              "WHERE finding_id = ? ORDER BY seq", (finding_id,)))
    return _with_changes(rows)


def open_in_scope(conn: Conn, source: str, scope: str, keep: Iterable[str],
                  peers: Collection[str] = ()) -> list[Finding]:
    """Open findings of a full-import scope whose fingerprint is not in ``keep`` (and that no ``peers`` report)."""
    keep = set(keep)
    rows = _rows(conn.execute("SELECT * FROM findings WHERE source = ? AND scope = ? AND status = 'open'",
                              (source, scope)))
    return [from_row(r) for r in rows if r["fingerprint"] not in keep and not _reported_by(conn, r["id"], peers)]


def open_unseen(conn: Conn, source: str, scope: str, since: str,
                peers: Collection[str] = ()) -> list[Finding]:
    """Open findings of a scope not seen since ``since`` (the start of a complete full-import run), except those
    that one of ``peers`` (the other sources of the fingerprint scope) reports."""
    rows = _rows(conn.execute("SELECT * FROM findings WHERE source = ? AND scope = ? AND status = 'open' "
                              "AND last_seen < ?", (source, scope, since)))
    return [from_row(r) for r in rows if not _reported_by(conn, r["id"], peers)]


def _reported_by(conn: Conn, finding_id: str, peers: Collection[str]) -> bool:
    """Whether one of ``peers`` reports the finding (no query at all for a source without a shared scope)."""
    return bool(peers) and not reporters(conn, finding_id).isdisjoint(peers)


def reporters(conn: Conn, finding_id: str) -> set[str]:
    """The sources that reported a finding since it was last opened (created or reopened): the actors of its
    history from then on. A source that reports a finding another source created leaves a ``finding.reported``
    row the first time, so this holds even when its report changed nothing."""
    rows = conn.execute(
        "SELECT DISTINCT actor FROM finding_history WHERE finding_id = ? AND actor IS NOT NULL AND seq >= "
        "coalesce((SELECT max(seq) FROM finding_history WHERE finding_id = ? "
        "AND event_type IN ('finding.created', 'finding.reopened')), 0)", (finding_id, finding_id)).fetchall()
    return {r[0] for r in rows}


def due_for_sla(conn: Conn, now: str, limit: int = 500) -> list[Finding]:
    rows = _rows(conn.execute("SELECT * FROM findings WHERE status = 'open' AND sla_breached_at IS NULL "
                              "AND sla_due_at IS NOT NULL AND sla_due_at <= ? ORDER BY sla_due_at LIMIT ?",
                              (now, limit)))
    return [from_row(r) for r in rows]


def mark_sla_breached(conn: Conn, finding_id: str, at: str) -> None:
    conn.execute("UPDATE findings SET sla_breached_at = ? WHERE id = ?", (at, finding_id))


# --- external refs: the ticket a finding has at a work-item target ------------------------------------------


def external_refs(conn: Conn, finding_id: str) -> dict[str, ExternalRef]:
    return external_refs_of(conn, [finding_id]).get(finding_id, {})


def external_refs_of(conn: Conn, finding_ids: list[str]) -> dict[str, dict[str, ExternalRef]]:
    """The refs of several findings in one query (a page of a listing), by finding id then target: the list and
    the detail of the API must say the same thing about a finding's tickets."""
    out: dict[str, dict[str, ExternalRef]] = {}
    for start in range(0, len(finding_ids), 30_000):
        chunk = finding_ids[start:start + 30_000]
        rows = conn.execute(f"SELECT finding_id, target, remote_id, url, remote_status FROM external_refs "
                            f"WHERE finding_id IN ({','.join('?' * len(chunk))}) ORDER BY finding_id, target",
                            chunk).fetchall()
        for fid, t, r, u, st in rows:
            out.setdefault(fid, {})[t] = ExternalRef(id=r, url=u, status=st)
    return out


def ref(conn: Conn, finding_id: str, target: str) -> Ref | None:
    row = conn.execute("SELECT remote_id, url, remote_status, state FROM external_refs "
                       "WHERE finding_id = ? AND target = ?", (finding_id, target)).fetchone()
    return Ref(finding_id, target, *row) if row else None


def claim_ref(conn: Conn, finding_id: str, target: str, now: str) -> Ref:
    """The link row, written before the create call: a crash between the two is reconciled, not duplicated."""
    conn.execute("INSERT INTO external_refs (finding_id, target, state, created_at, updated_at) "
                 "VALUES (?, ?, 'creating', ?, ?) ON CONFLICT DO NOTHING", (finding_id, target, now, now))
    found = ref(conn, finding_id, target)
    assert found is not None
    return found


def link_ref(conn: Conn, finding_id: str, target: str, remote_id: str, url: str | None,
             remote_status: str | None, now: str) -> None:
    conn.execute("UPDATE external_refs SET remote_id = ?, url = coalesce(?, url), "
                 "remote_status = coalesce(?, remote_status), state = 'linked', updated_at = ? "
                 "WHERE finding_id = ? AND target = ?", (remote_id, url, remote_status, now, finding_id, target))


def linked(conn: Conn, finding_id: str, target: str) -> bool:
    """The finding has a ticket at the target, or one is on its way: its ref is linked, or a delivery of it to
    that target is still pending or in flight (a create not sent yet). A create that went dead made nothing."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM external_refs WHERE finding_id = ? AND target = ? AND state = 'linked') "
        "OR EXISTS (SELECT 1 FROM deliveries WHERE target = ? AND order_key = ? AND state IN ('pending', 'in_flight'))",
        (finding_id, target, target, finding_id)).fetchone()[0] == 1


def linked_refs(conn: Conn, target: str, after: str = "", limit: int = 100) -> list[Ref]:
    """Linked tickets of open findings, paged by finding id (for status sync-back)."""
    rows = conn.execute(
        "SELECT r.finding_id, r.target, r.remote_id, r.url, r.remote_status, r.state FROM external_refs r "
        "JOIN findings f ON f.id = r.finding_id WHERE r.target = ? AND r.state = 'linked' AND f.status = 'open' "
        "AND r.finding_id > ? ORDER BY r.finding_id LIMIT ?", (target, after, limit)).fetchall()
    return [Ref(*r) for r in rows]


def finding_for_remote(conn: Conn, target: str, remote_id: str) -> str | None:
    row = conn.execute("SELECT finding_id FROM external_refs WHERE target = ? AND remote_id = ?",
                       (target, remote_id)).fetchone()
    return row[0] if row else None


def set_remote_status(conn: Conn, finding_id: str, target: str, status: str, now: str) -> None:
    conn.execute("UPDATE external_refs SET remote_status = ?, synced_at = ? WHERE finding_id = ? AND target = ?",
                 (status, now, finding_id, target))


def search(conn: Conn, *, status: str | None = None, severity: str | None = None,
           source: str | None = None, asset_tag: str | None = None, created_after: str | None = None,
           text: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[Finding], int]:
    """Filtered findings, newest first, and the total count of the filter."""
    where, args = given(("status = ?", status), ("severity = ?", severity), ("source = ?", source),
                        ("first_seen >= ?", created_after))
    if asset_tag is not None:
        where.append(f"EXISTS (SELECT 1 FROM {json_items(conn, 'findings.asset', 'tags')} WHERE value = ?)")
        args.append(asset_tag)
    if text:
        where.append("(title LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\' OR cve LIKE ? ESCAPE '\\' "
                     "OR asset LIKE ? ESCAPE '\\')")
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [pattern] * 4
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    total = conn.execute(f"SELECT count(*) FROM findings{clause}", args).fetchone()[0]
    rows = _rows(conn.execute(f"SELECT * FROM findings{clause} ORDER BY first_seen DESC, id DESC LIMIT ? OFFSET ?",
                              (*args, limit, offset)))
    return [from_row(r) for r in rows], int(total)


def _row(conn: Conn) -> str:
    return (f"id, severity, status, source, title, {json_text(conn, 'asset', 'identifier')} AS asset, first_seen, "
            "last_seen, sla_due_at, sla_breached_at")


# The orders of ``page`` and their columns (migration 0011 indexes them, with the id, except first seen: see 0010).
SORTS = {"first_seen": "first_seen", "last_seen": "last_seen", "severity": "severity_rank",
         "sla_due_at": "sla_due_sort"}
NO_DUE = "9999-12-31T23:59:59.999Z"  # the sort key of a finding without an SLA due date: after every date


def page(conn: Conn, *, status: str | None = None, severity: str | None = None,
         source: str | None = None, asset: str | None = None, fingerprint: str | None = None, cve: str | None = None,
         sla_breached: bool = False, before: str | None = None, sort: Sort | None = None,
         limit: int = 50) -> list[dict[str, Any]]:
    """Summary rows for ``hub findings list`` and the console, newest first (first_seen, then id), or in ``sort``
    order (a key of SORTS; each row has its key's value as ``sort_key``). Keyset paging: ``before`` is the last id
    of the previous page (the default order), or ``sort.after`` its (key value, id), so a page costs the same however
    deep it is (no OFFSET walk). ``asset`` matches the asset's identifier or one of its tags; ``cve`` one of the
    finding's CVEs, in any case."""
    where, args = given(("status = ?", status), ("severity = ?", severity), ("source = ?", source),
                        ("fingerprint = ?", fingerprint))
    if asset is not None:
        where.append(f"({json_text(conn, 'asset', 'identifier')} = ? "
                     f"OR EXISTS (SELECT 1 FROM {json_items(conn, 'findings.asset', 'tags')} WHERE value = ?))")
        args += [asset, asset]
    if cve is not None:
        where.append(f"EXISTS (SELECT 1 FROM {json_items(conn, 'findings.cve')} WHERE upper(value) = upper(?))")
        args.append(cve)
    if sla_breached:
        where.append("sla_breached_at IS NOT NULL")
    if before is not None:
        where.append("(first_seen, id) < (SELECT first_seen, id FROM findings WHERE id = ?)")
        args.append(before)
    column = SORTS[sort.key] if sort else "first_seen"
    if (asset is not None or cve is not None) and column != "first_seen":
        # No index finds these: the matching findings first, then their order. Walking the order's index instead
        # read each finding it passed at random, every one for a rare asset (318 ms at 100,000, bench/console.py).
        more, values, order = keyset("sort_key", "id", sort or Sort("first_seen"))
        outer = f" WHERE {' AND '.join(more)}" if more else ""
        return _rows(conn.execute(
            f"WITH chosen AS MATERIALIZED (SELECT {_row(conn)}, {column} AS sort_key FROM findings WHERE "
            f"{' AND '.join(where)}) SELECT * FROM chosen{outer} ORDER BY {order} LIMIT ?", (*args, *values, limit)))
    more, values, order = keyset(column, "id", sort or Sort("first_seen"))
    clause = f" WHERE {' AND '.join(where + more)}" if where or more else ""
    return _rows(conn.execute(f"SELECT {_row(conn)}, {column} AS sort_key FROM findings{clause} ORDER BY {order} "
                              f"LIMIT ?", (*args, *values, limit)))


def sla_breached_at(conn: Conn, finding_id: str) -> str | None:
    row = conn.execute("SELECT sla_breached_at FROM findings WHERE id = ?", (finding_id,)).fetchone()
    return row[0] if row else None


def history_of_event(conn: Conn, event_id: str) -> list[dict[str, Any]]:
    """The lifecycle steps an event caused, in order (for ``hub explain evt_N``)."""
    rows = _rows(conn.execute("SELECT seq, finding_id, at, event_type, changes FROM finding_history "
                              "WHERE event_id = ? ORDER BY seq", (event_id,)))
    return _with_changes(rows)


def _with_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows with their ``changes`` column decoded."""
    for r in rows:
        r["changes"] = orjson.loads(r["changes"])
    return rows
