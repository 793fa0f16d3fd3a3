"""SLA reporting shared by ``GET /api/v1/sla`` and ``hub sla``: the period, the text table and the CSV export.

The numbers come from ``hub/store/sla.py`` (SQL lives in the store). The CSV is opened by people in
spreadsheets, and finding titles, hosts and tags come from scanners and whoever can make them report
something: a cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return, which some
spreadsheets skip before reading a formula) is prefixed with ``'`` so it is shown as text, never run.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from hub.ids import iso, parse_iso

DEFAULT_DAYS = 30
_LAST = 253402300799.0  # 9999-12-31T23:59:59Z: the store's fixed-width ISO form ends there
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class PeriodError(ValueError):
    """A ``since``/``until`` that is not an ISO 8601 time, or a period that ends before it starts."""


def period(since: str | None, until: str | None, now: float) -> tuple[str, str]:
    """``[since, until)`` in the store's ISO form; ``until`` defaults to now, ``since`` to 30 days before it.
    Bounds outside 1970-9999 are moved to the nearest end (no finding is dated there, and the store's fixed-width
    ISO form has four-digit years); a period that does not end after it starts is an error."""
    try:
        end = parse_iso(until) if until is not None else now
        start = parse_iso(since) if since is not None else end - DEFAULT_DAYS * 86400
    except (ValueError, OverflowError, OSError):  # not a time, or one a datetime cannot hold
        raise PeriodError("since and until must be ISO 8601 dates or times (e.g. 2026-11-01T00:00:00Z)") from None
    if start >= end:
        raise PeriodError("since must be before until")
    return iso(min(max(start, 0.0), _LAST)), iso(min(max(end, 0.0), _LAST))


def csv_cell(value: Any) -> str:
    """A value as a CSV cell that a spreadsheet shows as text (None is empty)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """The header and every row, each cell through ``csv_cell``; returns how many rows were written."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        count += 1
    return count


def _duration(secs: float | None) -> str:
    if secs is None:
        return "-"
    return f"{secs / 86400:.1f}d" if secs >= 86400 else f"{secs / 3600:.1f}h"


_HEADER = ("OPEN OK", "BREACHED", "NO SLA", "FIXED OK", "FIXED LATE", "MEAN TTR", "MEDIAN TTR")


def _line(name: str, r: dict[str, Any]) -> str:
    cells = (r["open_within_sla"], r["open_breached"], r["open_no_sla"], r["resolved_within_sla"],
             r["resolved_late"], _duration(r["mean_time_to_resolve_secs"]), _duration(r["median_time_to_resolve_secs"]))
    return f"{name:<24.24} " + " ".join(f"{c!s:>10}" for c in cells)


def table(report: dict[str, Any]) -> str:
    """The report as text: the period, then one block per breakdown (severity, source, tag)."""
    p, f = report["period"], report["filters"]
    scope = ", ".join(f"{k} {v}" for k, v in f.items() if v) or "all findings"
    lines = [f"SLA report: {scope}; resolved from {p['since']} to {p['until']}; open as of {report['as_of']}",
             "(OPEN OK: open within SLA; FIXED OK / LATE: resolved in the period before / after the due date; "
             "TTR: time to resolve)", ""]
    for title, key, rows in (("SEVERITY", "severity", report["by_severity"]), ("SOURCE", "source", report["by_source"]),
                             ("ASSET TAG", "tag", report["by_tag"])):
        lines.append(f"{title:<24} " + " ".join(f"{h:>10}" for h in _HEADER))
        lines += [_line(str(r[key]), r) for r in rows]
        if key == "severity":
            lines.append(_line("all", report["total"]))
        elif not rows:
            lines.append("(none)")
        lines.append("")
    return "\n".join(lines).rstrip("\n")
