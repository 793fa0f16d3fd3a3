"""The lists (events, findings, deliveries, the audit log): their filters, their columns, one query per page, and
the CSV of a whole filtered list.

Everything that picks rows is in the URL (filters, ``sort``, ``before`` for the page, ``limit``), so back, reload and
a shared link show the same rows. ``sort=severity`` orders a list by that column, ascending; ``sort=-severity``
descending. Pages are keyset pages: ``before`` is the previous page's last row, its id when the list is in id order
(``evt_812``), else its sort value and id (``high,fnd_01J...``), and a page costs one query however deep it is. An
unknown parameter or a bad value is a 400, never a quietly wider list.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hub.ids import iso, parse_iso, parse_uint
from hub.models import SEVERITIES, SEVERITY_RANK
from hub.settings import Settings
from hub.sla import csv_cell
from hub.store import Store
from hub.store import deliveries as delivery_rows
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store import tokens as token_rows
from hub.store.conn import Conn
from hub.store.keyset import Sort

PAGE = 50
MAX_PAGE = 500
CSV_CHUNK = 1000
SCAN_WINDOW = 7 * 86400  # the widest received-at window a search of stored bodies may read
JSON_PATH = re.compile(r"\$(\.[A-Za-z0-9_]+|\[[0-9]+\])*")
RANKS = {**SEVERITY_RANK, "other": 0}  # a severity in a cursor, by name (a stored one is always one of SEVERITIES)
NAMES = {rank: name for name, rank in RANKS.items()}
EXAMPLES = {"time": "2026-11-22T06:00:00.000Z", "int": "3", "severity": "high"}


@dataclass(frozen=True)
class Filter:
    name: str
    label: str
    kind: str  # select | text | time | flag
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    kind: str = "text"  # text | time | id (a link to the object's page)


@dataclass(frozen=True)
class SortKey:
    """A column a list sorts by: ``sort=<column>`` ascending, ``sort=-<column>`` descending."""

    column: str  # the on-screen column's key, and its name in ``sort``
    key: str  # the store's name of the order (hub/store: SORTS of each query module)
    kind: str  # of its value in a cursor: id (the id alone) | time | int | severity
    descending: bool  # the order a click on the column's title starts with
    needs: tuple[tuple[str, str | None], ...] = ()  # (filter, value or None: any) the order needs
    why: str = ""  # the reason it needs them, for the 400

    def allowed(self, values: Mapping[str, Any]) -> bool:
        return all(values.get(f) is not None and v in (None, values.get(f)) for f, v in self.needs)


@dataclass(frozen=True)
class Query:
    """A list's URL, parsed: the filters' values, the order (as ``sort`` writes it) and its store Sort (with the
    page's cursor), and the page size."""

    values: dict[str, Any]
    order: str
    sort: Sort
    limit: int


Fetch = Callable[[Conn, Mapping[str, Any], Sort, int], list[dict[str, Any]]]
Check = Callable[[Mapping[str, Any], float], None]  # (filters, now): ValueError when they do not go together


@dataclass(frozen=True)
class Listing:
    name: str  # the URL's: /ui/<name>, /ui/<name>.csv
    title: str
    prefix: str  # of the ids, and of ``before``
    filters: tuple[Filter, ...]
    columns: tuple[Column, ...]
    fetch: Fetch  # (connection, filters, order and cursor, limit) -> rows in that order
    default: SortKey  # the order without ``sort``, descending (newest first)
    tiebreak: str  # the row's unique column after the sort key: seq or id
    sorts: tuple[SortKey, ...] = ()  # the orders ``sort`` takes
    check: Check | None = None

    @property
    def default_order(self) -> str:
        return f"-{self.default.column}"

    def parse(self, params: Mapping[str, str], now: float) -> Query:
        """The filters as the query takes them, the order with the page's cursor, and the page size; ValueError with
        the sentence to show when a parameter is unknown, its value is not one the filter takes, the filters do not
        go together (``check``, at ``now``), the order is not one of the list's or ``before`` is not a cursor of
        that order."""
        known = {f.name: f for f in self.filters}
        unknown = sorted(set(params) - {*known, "sort", "before", "limit"})
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for f in self.filters:
            raw = params.get(f.name, "").strip()
            values[f.name] = _value(f, raw) if raw else (False if f.kind == "flag" else None)
        if self.check is not None:
            self.check(values, now)
        order = params.get("sort") or self.default_order
        key = self._sort_key(order, values)
        sort = Sort(key.key, order.startswith("-"), self._cursor(params["before"], key) if params.get("before")
                    else None)
        limit = parse_uint(params["limit"], MAX_PAGE) if "limit" in params else PAGE
        if not limit:
            raise ValueError(f"limit must be a number from 1 to {MAX_PAGE}")
        return Query(values, order, sort, limit)

    def sort_key(self, column: str) -> SortKey | None:
        """The order by ``column`` that its title links to, if the list sorts by it."""
        return next((k for k in self.sorts if k.column == column), None)

    def _sort_key(self, order: str, values: Mapping[str, Any]) -> SortKey:
        key = self.default if order == self.default_order else self.sort_key(order.removeprefix("-"))
        if key is None and not self.sorts:
            raise ValueError(f"the {self.title.lower()} has one order, newest first: it takes no sort")
        if key is None:
            raise ValueError(f"sort must be one of {', '.join(k.column for k in self.sorts)} (ascending), or one "
                             f"of them after a minus sign (descending, like -{self.sorts[0].column})")
        if not key.allowed(values):
            needs = " and ".join(f"{f}={v}" if v else f"a {f}" for f, v in key.needs)
            raise ValueError(f"sort={order} needs {needs}: {key.why}")
        return key

    def _cursor(self, raw: str, key: SortKey) -> tuple[Any, Any]:
        """``before`` as the store's (sort value, tiebreak): an id alone in id order, else ``value,id``."""
        value, _, ident = raw.rpartition(",") if key.kind != "id" else ("", "", raw)
        tiebreak = self._id(ident)
        parsed = _sort_value(value, key.kind) if key.kind != "id" else None
        if tiebreak is None or (key.kind != "id" and parsed is None):
            like = self.prefix + "..." if key.kind == "id" else f"{EXAMPLES[key.kind]},{self.prefix}..."
            raise ValueError(f"before must be the last row of the previous page, like {like} (the Next page "
                             f"link has it)")
        return parsed, tiebreak

    def _id(self, ident: str) -> Any:
        """An id of this list as its tiebreak column holds it (a seq for ``evt_N``), or None when it is not one."""
        if not ident.startswith(self.prefix) or len(ident) > 64:
            return None
        return ident if self.tiebreak == "id" else parse_uint(ident[len(self.prefix):])

    def cursor(self, row: Mapping[str, Any], sort: Sort) -> str:
        """The ``before`` of the page after ``row`` (the last one shown), in ``sort`` order."""
        key = next(k for k in (self.default, *self.sorts) if k.key == sort.key)
        if key.kind == "id":
            return str(row["id"])
        value = row["sort_key"]
        return f"{NAMES.get(value, value) if key.kind == 'severity' else value},{row['id']}"

    def after(self, row: Mapping[str, Any], sort: Sort) -> Sort:
        """``sort`` from the row after ``row``."""
        return replace(sort, after=(row.get("sort_key"), row[self.tiebreak]))

    def page(self, conn: Conn, query: Query) -> tuple[list[dict[str, Any]], str | None]:
        """One page and the ``before`` of the next one (None on the last page): one query, a row more than shown."""
        rows = self.fetch(conn, query.values, query.sort, query.limit + 1)
        more = len(rows) > query.limit
        return rows[:query.limit], (self.cursor(rows[query.limit - 1], query.sort) if more else None)

    async def csv(self, store: Store, query: Query) -> AsyncIterator[str]:
        """The whole filtered list as CSV in the page's order, in the on-screen columns, read in chunks on a reader
        thread (a long export does not hold the event loop); cells a spreadsheet would run are quoted
        (hub/sla.py)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([c.title for c in self.columns])
        sort = replace(query.sort, after=None)
        while True:
            rows = await store.read(lambda conn, s=sort: self.fetch(conn, query.values, s, CSV_CHUNK))  # type: ignore[misc]
            for row in rows:
                writer.writerow([csv_cell(row[c.key]) for c in self.columns])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(rows) < CSV_CHUNK:
                return
            sort = self.after(rows[-1], sort)


def _value(f: Filter, raw: str) -> Any:
    if f.kind == "select" and raw not in f.choices:
        raise ValueError(f"{f.name} must be one of {', '.join(f.choices)}")
    if f.kind == "time":
        try:
            return iso(parse_iso(raw))
        except (ValueError, OverflowError, OSError):
            raise ValueError(f"{f.name} must be a time like 2026-11-22T06:00:00Z") from None
    if f.kind == "flag":
        return raw == "1"
    return raw


def _sort_value(text: str, kind: str) -> Any:
    """A sort value of a cursor, as the store compares it, or None when it is not one of ``kind``."""
    if kind == "int":
        return parse_uint(text)
    if kind == "severity":
        return RANKS.get(text)
    try:  # a time: compared as the stored text, which is ISO 8601
        parse_iso(text)
    except (ValueError, OverflowError, OSError):
        return None
    return text if len(text) <= 40 else None


def _before(sort: Sort) -> Any:
    return sort.after[1] if sort.after else None


def _body_search(v: Mapping[str, Any], now: float) -> None:
    """A search of stored bodies reads every body of its window (no index helps), so it needs a window of at most
    ``SCAN_WINDOW``; a JSON path is checked here, so that SQLite never sees a malformed one."""
    if v["path"] is not None and not JSON_PATH.fullmatch(v["path"]):
        raise ValueError("path must be a JSON path like $.data.finding_id or $.items[0].id (keys are letters, "
                         "digits and _)")
    if (v["path"] is None) != (v["value"] is None):
        raise ValueError("path and value go together: the events whose body has value at path")
    if v["q"] is None and v["path"] is None:
        return
    if v["since"] is None:
        raise ValueError("a search of stored bodies needs since (and until, or now): it reads every body in "
                         "the window, so the window must be at most 7 days")
    width = parse_iso(v["until"] or iso(now)) - parse_iso(v["since"])
    if width > SCAN_WINDOW:
        raise ValueError("a search of stored bodies reads every body in the window: since to until (or now) "
                         "must be at most 7 days")


def _events(conn: Conn, v: Mapping[str, Any], sort: Sort, limit: int) -> list[dict[str, Any]]:
    rows = event_rows.listing(conn, source=v["source"], state=v["state"], since=v["since"], until=v["until"],
                              text=v["q"], path=v["path"], path_value=v["value"], sort=sort, limit=limit)
    for r in rows:
        r["note"] = r["error"] if r["state"] == "failed" else r["idempotency_key"]
    return rows


def _findings(conn: Conn, v: Mapping[str, Any], sort: Sort, limit: int) -> list[dict[str, Any]]:
    rows = finding_rows.page(conn, severity=v["severity"], status=v["status"], source=v["source"], asset=v["asset"],
                             fingerprint=v["fingerprint"], cve=v["cve"], sla_breached=v["sla_breached"],
                             sort=sort, limit=limit)
    for r in rows:
        r["sla"] = "breached" if r["sla_breached_at"] else ("due" if r["sla_due_at"] else "-")
    return rows


def _deliveries(conn: Conn, v: Mapping[str, Any], sort: Sort, limit: int) -> list[dict[str, Any]]:
    rows = delivery_rows.listing(conn, state=v["state"], target=v["target"], finding=v["finding"], event=v["event"],
                                 sort=sort, limit=limit)
    for r in rows:  # as `hub deliveries list`: only a pending delivery has a next attempt
        r["next_attempt"] = r["next_attempt_at"] if r["state"] == "pending" else None
    return rows


def _audit(conn: Conn, v: Mapping[str, Any], sort: Sort, limit: int) -> list[dict[str, Any]]:
    rows = token_rows.audit_page(conn, actor=v["actor"], action=v["action"], before=_before(sort), limit=limit)
    for r in rows:  # an audit row has a seq, not an id: ``aud_<seq>`` is its ``before`` in the URL
        r["id"] = f"aud_{r['seq']}"
    return rows


EVENT_ID = SortKey("id", "seq", "id", True)
DELIVERY_ID = SortKey("id", "seq", "id", True)
FIRST_SEEN = SortKey("first_seen", "first_seen", "time", True)


def listings(settings: Settings) -> dict[str, Listing]:
    sources = tuple(settings.config.source_names)
    return {
        "events": Listing("events", "Events", "evt_", (
            Filter("source", "Source", "select", sources),
            Filter("state", "State", "select", ("pending", "processed", "failed")),
            Filter("since", "Received from", "time"), Filter("until", "Received before", "time"),
            Filter("q", "Text in body", "text"), Filter("path", "JSON path", "text"),
            Filter("value", "Value at path", "text"),
        ), (Column("id", "ID", "id"), Column("source", "Source"), Column("received_at", "Received", "time"),
            Column("state", "State"), Column("verified_by", "Verified by"), Column("size", "Bytes"),
            Column("note", "Idempotency key / error")), _events, EVENT_ID, "seq",
            (EVENT_ID, SortKey("received_at", "received_at", "time", True)), _body_search),
        "findings": Listing("findings", "Findings", "fnd_", (
            Filter("severity", "Severity", "select", SEVERITIES),
            Filter("status", "Status", "select", ("open", "resolved", "dismissed")),
            Filter("source", "Source", "select", sources), Filter("asset", "Asset (identifier or tag)", "text"),
            Filter("sla_breached", "SLA breached", "flag"), Filter("fingerprint", "Fingerprint", "text"),
            Filter("cve", "CVE", "text"),
        ), (Column("id", "ID", "id"), Column("severity", "Severity"), Column("status", "Status"),
            Column("source", "Source"), Column("asset", "Asset"), Column("first_seen", "First seen", "time"),
            Column("last_seen", "Last seen", "time"), Column("sla_due_at", "SLA due", "time"), Column("sla", "SLA"),
            Column("title", "Title")), _findings, FIRST_SEEN, "id",
            (SortKey("severity", "severity", "severity", True), FIRST_SEEN,
             SortKey("last_seen", "last_seen", "time", True), SortKey("sla_due_at", "sla_due_at", "time", False))),
        "deliveries": Listing("deliveries", "Deliveries", "dlv_", (
            Filter("target", "Target", "select", tuple(settings.targets)),
            Filter("state", "State", "select", ("pending", "in_flight", "done", "dead")),
            Filter("finding", "Finding id", "text"), Filter("event", "Event id", "text"),
        ), (Column("id", "ID", "id"), Column("target", "Target"), Column("kind", "Kind"), Column("state", "State"),
            Column("attempts", "Tries"), Column("created_at", "Created", "time"),
            Column("next_attempt", "Next attempt", "time"), Column("finding_id", "Finding", "id"),
            Column("event_id", "Event", "id"), Column("last_status", "Last status"),
            Column("last_error", "Last error")), _deliveries, DELIVERY_ID, "seq",
            (DELIVERY_ID, SortKey("attempts", "attempts", "int", True),
             SortKey("next_attempt", "next_attempt_at", "time", False, (("state", "pending"), ("target", None)),
                     "only a pending delivery has a next attempt, and each target's queue is in its own order"))),
        "audit": Listing("audit", "Audit log", "aud_", (
            Filter("actor", "Actor (token name or id)", "text"), Filter("action", "Action", "text"),
        ), (Column("at", "At", "time"), Column("actor", "Actor"), Column("action", "Action"),
            Column("target", "Object"), Column("result", "Result"), Column("detail", "Detail"),
            Column("remote_addr", "Address")), _audit, SortKey("id", "seq", "id", True), "seq"),
    }
