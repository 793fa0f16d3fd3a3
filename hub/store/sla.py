"""SLA queries on ``findings``: the report (per severity, source and asset tag) and the rows of the CSV export.

Definitions, in one place so the report, the export and the docs agree:
- open findings are counted as they are *now* (``as_of``): within SLA while ``sla_due_at`` is after it,
  breached once it has passed (the due date decides, not ``sla_breached_at``: the breach job runs once a
  minute, and a severity lowered after a breach moves the date out again); no SLA when there is no date;
- resolved findings count when ``resolved_at`` falls in ``[since, until)``: within SLA when resolved at or
  before the due date, late after it; time to resolve is ``resolved_at - first_seen``;
- dismissed findings are in neither (a human decided they need no fix).

Every timestamp is the hub's fixed-width ISO form (``hub.ids.iso``), so text comparison is time order and
``julianday`` reads them as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from hub.models import SEVERITIES

COUNTS = ("open_within_sla", "open_breached", "open_no_sla", "resolved_within_sla", "resolved_late",
          "resolved_no_sla")
_IN_PERIOD = "(f.status = 'resolved' AND f.resolved_at >= :since AND f.resolved_at < :until)"
_SECS = "(julianday(f.resolved_at) - julianday(f.first_seen)) * 86400.0"
_STATE = ("CASE WHEN f.status = 'open' THEN (CASE WHEN f.sla_due_at IS NULL THEN 'no_sla' "
          "WHEN f.sla_due_at > :now THEN 'within_sla' ELSE 'breached' END) "
          "WHEN f.status = 'resolved' THEN (CASE WHEN f.sla_due_at IS NULL THEN 'resolved_no_sla' "
          "WHEN f.resolved_at <= f.sla_due_at THEN 'resolved_within_sla' ELSE 'resolved_late' END) "
          "ELSE 'dismissed' END")
# the key each breakdown groups by; a tag breakdown joins each finding's tags (a finding counts once per tag)
_GROUPS = {"total": ("'all'", ""), "severity": ("f.severity", ""), "source": ("f.source", ""),
           "tag": ("t.value", ", json_each(f.asset, '$.tags') t")}


def _filters(source: str | None, tag: str | None) -> str:
    where = ""
    if source is not None:
        where += " AND f.source = :source"
    if tag is not None:
        where += " AND EXISTS (SELECT 1 FROM json_each(f.asset, '$.tags') WHERE value = :tag)"
    return where


def _breakdown(conn: sqlite3.Connection, group: str, where: str, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row per key: the counts, the mean (one aggregate pass) and the median time to resolve (a window
    over the period's resolved findings only)."""
    key, join = _GROUPS[group]
    counts = conn.execute(
        f"SELECT {key} AS k, "
        "sum(f.status = 'open' AND f.sla_due_at > :now), "
        "sum(f.status = 'open' AND f.sla_due_at <= :now), "
        "sum(f.status = 'open' AND f.sla_due_at IS NULL), "
        f"sum({_IN_PERIOD} AND f.resolved_at <= f.sla_due_at), "
        f"sum({_IN_PERIOD} AND f.resolved_at > f.sla_due_at), "
        f"sum({_IN_PERIOD} AND f.sla_due_at IS NULL), "
        f"avg(CASE WHEN {_IN_PERIOD} THEN {_SECS} END) "
        f"FROM findings f{join} WHERE (f.status = 'open' OR {_IN_PERIOD}){where} GROUP BY k", args).fetchall()
    medians = dict(conn.execute(
        f"WITH d AS (SELECT {key} AS k, {_SECS} AS secs FROM findings f{join} WHERE {_IN_PERIOD}{where}), "
        "r AS (SELECT k, secs, row_number() OVER (PARTITION BY k ORDER BY secs) AS n, "
        "count(*) OVER (PARTITION BY k) AS c FROM d) "
        "SELECT k, avg(secs) FROM r WHERE n IN ((c + 1) / 2, (c + 2) / 2) GROUP BY k", args).fetchall())
    out = {}
    for row in counts:
        out[str(row[0])] = {**dict(zip(COUNTS, (int(v or 0) for v in row[1:7]), strict=True)),
                            "mean_time_to_resolve_secs": _secs(row[7]),
                            "median_time_to_resolve_secs": _secs(medians.get(row[0]))}
    return out


def _secs(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _empty() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTS, 0), "mean_time_to_resolve_secs": None, "median_time_to_resolve_secs": None}


def report(conn: sqlite3.Connection, *, since: str, until: str, now: str, source: str | None = None,
           tag: str | None = None) -> dict[str, Any]:
    """The SLA report: ``total``, then ``by_severity`` (every severity, in order, zeros included), ``by_source``
    and ``by_tag`` (the keys that have findings, by name). Each row has the ``COUNTS`` and the mean and median
    time to resolve in seconds (None when nothing was resolved in the period)."""
    args = {"since": since, "until": until, "now": now, "source": source, "tag": tag}
    where = _filters(source, tag)
    total = _breakdown(conn, "total", where, args).get("all", _empty())
    severity = _breakdown(conn, "severity", where, args)
    return {
        "period": {"since": since, "until": until}, "as_of": now, "filters": {"source": source, "tag": tag},
        "total": total,
        "by_severity": [{"severity": s, **severity.get(s, _empty())} for s in SEVERITIES],
        "by_source": [{"source": k, **v} for k, v in sorted(_breakdown(conn, "source", where, args).items())],
        "by_tag": [{"tag": k, **v} for k, v in sorted(_breakdown(conn, "tag", where, args).items())],
    }


EXPORT_COLUMNS = ("id", "source", "severity", "status", "sla_state", "title", "asset", "tags", "first_seen",
                  "sla_due_at", "resolved_at", "sla_breached_at")


def export_rows(conn: sqlite3.Connection, *, now: str, source: str | None = None, tag: str | None = None,
                status: str | None = None, page: int = 1000) -> Iterator[tuple[Any, ...]]:
    """Every finding (or those of a source, a tag, a status) with its SLA state (``within_sla``, ``breached``,
    ``no_sla``, ``resolved_within_sla``, ``resolved_late``, ``resolved_no_sla``, ``dismissed``), in
    ``EXPORT_COLUMNS`` order, oldest first. Paged by id so 100k findings are never in memory at once."""
    where = _filters(source, tag) + (" AND f.status = :status" if status is not None else "")
    args: dict[str, Any] = {"now": now, "source": source, "tag": tag, "status": status, "page": page, "after": ""}
    while True:
        rows = conn.execute(
            f"SELECT f.id, f.source, f.severity, f.status, {_STATE}, f.title, "
            "coalesce(json_extract(f.asset, '$.identifier'), json_extract(f.asset, '$.hostname'), "
            "json_extract(f.asset, '$.ip')), "
            "(SELECT group_concat(value, ';') FROM json_each(f.asset, '$.tags')), "
            "f.first_seen, f.sla_due_at, f.resolved_at, f.sla_breached_at "
            f"FROM findings f WHERE f.id > :after{where} ORDER BY f.id LIMIT :page", args).fetchall()
        yield from rows
        if len(rows) < page:
            return
        args["after"] = rows[-1][0]
