"""The lists (events, findings, deliveries, the audit log): their filters, their columns, one query per page, and
the CSV of a whole filtered list.

Everything that picks rows is in the URL (filters, ``before`` for the page, ``limit``), so back, reload and a shared
link show the same rows. Pages are keyset pages: ``before`` is the last id of the previous page, and a page costs one
query however deep it is. An unknown parameter or a bad value is a 400, never a quietly wider list.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.ids import iso, parse_iso, parse_uint
from hub.models import SEVERITIES
from hub.settings import Settings
from hub.sla import csv_cell
from hub.store import Store
from hub.store import deliveries as delivery_rows
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store import tokens as token_rows
from hub.store.conn import Conn

PAGE = 50
MAX_PAGE = 500
CSV_CHUNK = 1000
SCAN_WINDOW = 7 * 86400  # the widest received-at window a search of stored bodies may read
JSON_PATH = re.compile(r"\$(\.[A-Za-z0-9_]+|\[[0-9]+\])*")


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


Fetch = Callable[[Conn, Mapping[str, Any], str | None, int], list[dict[str, Any]]]
Check = Callable[[Mapping[str, Any], float], None]  # (filters, now): ValueError when they do not go together


@dataclass(frozen=True)
class Listing:
    name: str  # the URL's: /ui/<name>, /ui/<name>.csv
    title: str
    prefix: str  # of the ids, and of ``before``
    filters: tuple[Filter, ...]
    columns: tuple[Column, ...]
    fetch: Fetch  # (connection, filters, before id, limit) -> rows, newest first
    check: Check | None = None

    def parse(self, params: Mapping[str, str], now: float) -> tuple[dict[str, Any], str | None, int]:
        """(filters as the query takes them, the page's ``before`` id, the page size); ValueError with the sentence
        to show when a parameter is unknown, its value is not one the filter takes, or the filters do not go
        together (``check``, at ``now``)."""
        known = {f.name: f for f in self.filters}
        unknown = sorted(set(params) - {*known, "before", "limit"})
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for f in self.filters:
            raw = params.get(f.name, "").strip()
            values[f.name] = _value(f, raw) if raw else (False if f.kind == "flag" else None)
        if self.check is not None:
            self.check(values, now)
        before = params.get("before") or None
        if before is not None and (not before.startswith(self.prefix) or len(before) > 64
                                   or (self.prefix != "fnd_" and parse_uint(before[len(self.prefix):]) is None)):
            raise ValueError(f"before must be an id like {self.prefix}...")
        limit = parse_uint(params["limit"], MAX_PAGE) if "limit" in params else PAGE
        if not limit:
            raise ValueError(f"limit must be a number from 1 to {MAX_PAGE}")
        return values, before, limit

    def page(self, conn: Conn, values: Mapping[str, Any], before: str | None,
             limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """One page and the ``before`` of the next one (None on the last page): one query, a row more than shown."""
        rows = self.fetch(conn, values, before, limit + 1)
        return rows[:limit], (rows[limit - 1]["id"] if len(rows) > limit else None)

    async def csv(self, store: Store, values: Mapping[str, Any]) -> AsyncIterator[str]:
        """The whole filtered list as CSV, in the on-screen columns, read in chunks on a reader thread (a long
        export does not hold the event loop); cells a spreadsheet would run are quoted (hub/sla.py)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([c.title for c in self.columns])
        before: str | None = None
        while True:
            rows = await store.read(lambda conn, b=before: self.fetch(conn, values, b, CSV_CHUNK))  # type: ignore[misc]
            for row in rows:
                writer.writerow([csv_cell(row[c.key]) for c in self.columns])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(rows) < CSV_CHUNK:
                return
            before = rows[-1]["id"]


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


def _seq(ident: str | None, parse: Callable[[str], int | None]) -> int | None:
    return parse(ident) if ident else None


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


def _events(conn: Conn, v: Mapping[str, Any], before: str | None, limit: int) -> list[dict[str, Any]]:
    rows = event_rows.listing(conn, source=v["source"], state=v["state"], since=v["since"], until=v["until"],
                              text=v["q"], path=v["path"], path_value=v["value"],
                              before=_seq(before, event_rows.parse_id), limit=limit)
    for r in rows:
        r["note"] = r["error"] if r["state"] == "failed" else r["idempotency_key"]
    return rows


def _findings(conn: Conn, v: Mapping[str, Any], before: str | None, limit: int) -> list[dict[str, Any]]:
    rows = finding_rows.page(conn, severity=v["severity"], status=v["status"], source=v["source"], asset=v["asset"],
                             fingerprint=v["fingerprint"], cve=v["cve"], sla_breached=v["sla_breached"],
                             before=before, limit=limit)
    for r in rows:
        r["sla"] = "breached" if r["sla_breached_at"] else ("due" if r["sla_due_at"] else "-")
    return rows


def _deliveries(conn: Conn, v: Mapping[str, Any], before: str | None,
                limit: int) -> list[dict[str, Any]]:
    rows = delivery_rows.listing(conn, state=v["state"], target=v["target"], finding=v["finding"], event=v["event"],
                                 before=_seq(before, delivery_rows.parse_id), limit=limit)
    for r in rows:  # as `hub deliveries list`: only a pending delivery has a next attempt
        r["next_attempt"] = r["next_attempt_at"] if r["state"] == "pending" else None
    return rows


def _audit(conn: Conn, v: Mapping[str, Any], before: str | None, limit: int) -> list[dict[str, Any]]:
    rows = token_rows.audit_page(conn, actor=v["actor"], action=v["action"],
                                 before=_seq(before, lambda i: parse_uint(i.removeprefix("aud_"))), limit=limit)
    for r in rows:  # an audit row has a seq, not an id: ``aud_<seq>`` is its ``before`` in the URL
        r["id"] = f"aud_{r['seq']}"
    return rows


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
            Column("note", "Idempotency key / error")), _events, _body_search),
        "findings": Listing("findings", "Findings", "fnd_", (
            Filter("severity", "Severity", "select", SEVERITIES),
            Filter("status", "Status", "select", ("open", "resolved", "dismissed")),
            Filter("source", "Source", "select", sources), Filter("asset", "Asset (identifier or tag)", "text"),
            Filter("sla_breached", "SLA breached", "flag"), Filter("fingerprint", "Fingerprint", "text"),
            Filter("cve", "CVE", "text"),
        ), (Column("id", "ID", "id"), Column("severity", "Severity"), Column("status", "Status"),
            Column("source", "Source"), Column("asset", "Asset"), Column("first_seen", "First seen", "time"),
            Column("sla_due_at", "SLA due", "time"), Column("sla", "SLA"), Column("title", "Title")), _findings),
        "deliveries": Listing("deliveries", "Deliveries", "dlv_", (
            Filter("target", "Target", "select", tuple(settings.targets)),
            Filter("state", "State", "select", ("pending", "in_flight", "done", "dead")),
            Filter("finding", "Finding id", "text"), Filter("event", "Event id", "text"),
        ), (Column("id", "ID", "id"), Column("target", "Target"), Column("kind", "Kind"), Column("state", "State"),
            Column("attempts", "Tries"), Column("created_at", "Created", "time"),
            Column("next_attempt", "Next attempt", "time"), Column("finding_id", "Finding", "id"),
            Column("event_id", "Event", "id"), Column("last_status", "Last status"),
            Column("last_error", "Last error")), _deliveries),
        "audit": Listing("audit", "Audit log", "aud_", (
            Filter("actor", "Actor (token name or id)", "text"), Filter("action", "Action", "text"),
        ), (Column("at", "At", "time"), Column("actor", "Actor"), Column("action", "Action"),
            Column("target", "Object"), Column("result", "Result"), Column("detail", "Detail"),
            Column("remote_addr", "Address")), _audit),
    }
