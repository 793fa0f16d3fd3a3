"""Sorting the console's lists by column (issue 14): ``sort=<column>`` ascending, ``sort=-<column>`` descending, in the
URL with the filters; keyset pages whose cursor carries the sort value and the id, so that pages concatenate to
exactly the sorted set across ties; the CSV in the same order; every order walks an index (EXPLAIN QUERY PLAN).

The hub runs in-process behind an ASGI client (tests/test_console.py's harness); rows are written to the store."""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from hub.ids import iso
from hub.models import SEVERITY_RANK, Finding
from hub.store import deliveries as delivery_rows
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.ui import lists
from tests.support import force
from tests.test_console import Console, linked, running

T0 = 1_790_000_000



@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with running(tmp_path) as c:
        await c.login(c.token("read"))
        yield c


def store_findings(c: Console, n: int = 120) -> list[dict[str, Any]]:
    """``n`` findings of 3 severities, 2 statuses and 2 sources, with few distinct last-seen and due times (ties
    everywhere) and a third without a due date; returns them as dicts."""
    rnd = random.Random(7)
    made = []
    for i in range(n):
        f = {"id": f"fnd_{rnd.randrange(16 ** 12):012x}{i:014d}", "fingerprint": f"{i:032x}",
             "source": ("scanner", "other")[i % 2], "title": f"finding {i}",
             "severity": ("critical", "high", "low")[i % 3], "status": ("open", "resolved")[i // 3 % 2],
             "first_seen": iso(T0 + rnd.randrange(5) * 60), "last_seen": iso(T0 + rnd.randrange(7) * 60),
             "sla_due_at": None if i % 4 == 0 else iso(T0 + rnd.randrange(6) * 86400),
             "asset": {"identifier": f"web-{i % 5}", "tags": ["prod"] if i % 2 else []}}
        made.append(f)
        c.hub.store.write_sync(lambda conn, f=f: finding_rows.save(conn, Finding.model_validate(f), None, iso()))
    return made


def in_order(rows: list[dict[str, Any]], order: str) -> list[str]:
    """The ids of ``rows`` in ``order`` (``-`` descending), the id breaking ties the same way."""
    column = order.removeprefix("-")
    value: Callable[[dict[str, Any]], Any] = {
        "severity": lambda r: SEVERITY_RANK[r["severity"]],
        "sla_due_at": lambda r: r["sla_due_at"] or finding_rows.NO_DUE,
    }.get(column, lambda r: r[column])
    return [r["id"] for r in sorted(rows, key=lambda r: (value(r), r["id"]), reverse=order.startswith("-"))]


async def walk(c: Console, url: str, prefix: str) -> tuple[list[str], int]:
    """Every page from ``url`` on, following the Next page links: the ids in page order and the number of pages."""
    seen: list[str] = []
    pages = 0
    while url:
        html = await c.page(url)
        seen += linked(html, prefix)
        pages += 1
        found = re.search(r'<a href="(\?[^"]+)" rel="next">', html)
        url = urlsplit(url).path + found.group(1).replace("&amp;", "&") if found else ""
    return seen, pages


@pytest.mark.parametrize("order", ["-severity", "severity", "sla_due_at", "-sla_due_at", "-last_seen", "last_seen",
                                   "-first_seen", "first_seen"])
async def test_pages_in_any_order_concatenate_to_exactly_the_sorted_set(console, order):
    made = store_findings(console)
    seen, pages = await walk(console, "/ui/findings?" + urlencode({"sort": order}), "fnd_")
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120  # 50 + 50 + 20: no duplicate, no gap
    assert seen == in_order(made, order)


async def test_severity_sorts_by_rank_not_by_name(console):
    made = store_findings(console, 9)
    html = await console.page("/ui/findings?sort=-severity")
    shown = re.findall(r'<td class="c-severity">(\w+)</td>', html)
    assert shown == ["critical"] * 3 + ["high"] * 3 + ["low"] * 3
    assert linked(html, "fnd_") == in_order(made, "-severity")


async def test_filters_and_sort_together_page_through_the_filtered_set(console):
    made = store_findings(console)
    chosen = [f for f in made if f["status"] == "open" and f["source"] == "scanner"]
    url = "/ui/findings?" + urlencode({"status": "open", "source": "scanner", "sort": "sla_due_at", "limit": "7"})
    seen, pages = await walk(console, url, "fnd_")
    assert seen == in_order(chosen, "sla_due_at") and pages == -(-len(chosen) // 7)
    html = await console.page(url)
    assert 'value="open" selected' in html and '<input type="hidden" name="sort" value="sla_due_at">' in html
    nxt = parse_qs(urlsplit(re.search(r'<a href="(\?[^"]+)" rel="next">', html).group(1).replace("&amp;", "&")).query)
    assert nxt["sort"] == ["sla_due_at"] and nxt["status"] == ["open"] and nxt["limit"] == ["7"]
    value, _, ident = nxt["before"][0].rpartition(",")
    assert ident == seen[6] and value == next(f["sla_due_at"] or finding_rows.NO_DUE for f in made if f["id"] == ident)


@pytest.mark.parametrize("order", ["-severity", "sla_due_at", "last_seen", "-first_seen"])
async def test_an_asset_filter_with_a_sort_pages_through_the_matching_findings(console, order):
    """The asset filter has no index: the store takes the matching findings first, then sorts them."""
    made = store_findings(console)
    for asset, chosen in (("web-2", [f for f in made if f["asset"]["identifier"] == "web-2"]),
                          ("prod", [f for f in made if f["asset"]["tags"]])):
        seen, _ = await walk(console, "/ui/findings?" + urlencode({"asset": asset, "sort": order, "limit": "5"}),
                             "fnd_")
        assert seen == in_order(chosen, order), asset


async def test_column_titles_toggle_the_sort_and_keep_the_filters(console):
    store_findings(console, 6)
    html = await console.page("/ui/findings?status=open&sort=-severity&limit=2&before=high,fnd_x")
    heads = dict(re.findall(r'<th scope="col"[^>]*><a href="\?([^"]+)">([^<]+)</a>', html))
    links = {title: parse_qs(query.replace("&amp;", "&")) for query, title in heads.items()}
    assert links["Severity"] == {"status": ["open"], "sort": ["severity"], "limit": ["2"]}  # reversed, first page
    assert links["Last seen"]["sort"] == ["-last_seen"] and links["SLA due"]["sort"] == ["sla_due_at"]
    assert links["First seen"]["sort"] == ["-first_seen"] and "Title" not in links and "Status" not in links
    assert '<th scope="col" aria-sort="descending"><a href="?status=open&amp;sort=severity&amp;limit=2">' in html
    plain = await console.page("/ui/findings")
    assert '<th scope="col" aria-sort="descending"><a href="?sort=first_seen">First seen</a>' in plain
    assert 'href="/ui/findings.csv?status=open&amp;sort=-severity"' in html  # the export follows the sort


async def test_the_cursor_carries_the_value_so_a_deleted_row_does_not_end_the_list(console):
    made = store_findings(console)
    html = await console.page("/ui/findings?sort=-last_seen")
    nxt = re.search(r'<a href="(\?[^"]+)" rel="next">', html).group(1).replace("&amp;", "&")
    last = linked(html, "fnd_")[-1]
    force(console.hub.store.conn, "DELETE FROM findings WHERE id = ?", last)
    rest, _ = await walk(console, "/ui/findings" + nxt, "fnd_")
    assert rest == in_order(made, "-last_seen")[50:]


@pytest.mark.parametrize("path, says", [
    ("/ui/findings?sort=title", "sort must be one of severity, first_seen, last_seen, sla_due_at"),
    ("/ui/findings?sort=--severity", "sort must be one of"),
    ("/ui/findings?sort=Severity", "sort must be one of"),
    ("/ui/events?sort=source", "sort must be one of id, received_at"),
    ("/ui/audit?sort=at", "has one order, newest first"),
    ("/ui/deliveries?sort=next_attempt", "sort=next_attempt needs state=pending and a target: only a pending"),
    ("/ui/deliveries?state=dead&target=ok&sort=-next_attempt", "needs state=pending and a target"),
    ("/ui/deliveries?state=pending&sort=next_attempt", "needs state=pending and a target"),
    ("/ui/findings?sort=-severity&before=fnd_01", "before must be the last row of the previous page, like high,fnd_"),
    ("/ui/findings?sort=-severity&before=urgent,fnd_01", "before must be the last row"),
    ("/ui/findings?sort=last_seen&before=yesterday,fnd_01", "like 2026-11-22T06:00:00.000Z,fnd_"),
    ("/ui/findings?sort=last_seen&before=2026-11-22T06:00:00Z,evt_1", "before must be the last row"),
    ("/ui/findings?before=fnd_01", "before must be the last row"),  # the default order's cursor has its time too
    ("/ui/deliveries?sort=attempts&before=-1,dlv_3", "like 3,dlv_"),
    ("/ui/deliveries?sort=attempts&before=3,dlv_x", "before must be the last row"),
    ("/ui/events?sort=id&before=2026-11-22T06:00:00Z,evt_3", "like evt_"),
])
async def test_a_bad_sort_or_cursor_is_a_400_that_says_why(console, path, says):
    html = await console.page(path, 400)
    assert says in html
    csv_path = path.replace("?", ".csv?", 1)
    assert (await console.client.get(csv_path)).status_code == 400


async def test_the_csv_export_follows_the_sort_across_its_chunks(console, monkeypatch):
    made = store_findings(console)
    monkeypatch.setattr(lists, "CSV_CHUNK", 7)  # chunk boundaries inside runs of ties
    resolved, high = [f for f in made if f["status"] == "resolved"], [f for f in made if f["severity"] == "high"]
    for query, chosen in (({"sort": "-severity"}, made), ({"sort": "sla_due_at", "status": "resolved"}, resolved),
                          ({"sort": "last_seen", "severity": "high"}, high)):
        r = await console.client.get("/ui/findings.csv?" + urlencode(query))
        assert r.status_code == 200
        assert [row["ID"] for row in csv.DictReader(io.StringIO(r.text))] == in_order(chosen, query["sort"]), query


async def test_events_sort_by_received_time_and_deliveries_by_tries_and_next_attempt(console):
    c = console
    rnd = random.Random(3)
    received = [iso(T0 + rnd.randrange(4)) for _ in range(23)]  # not in commit order, with ties
    for n, at in enumerate(received):
        c.hub.store.write_sync(lambda conn, a=at, k=n: event_rows.insert(conn, event_rows.NewEvent(
            "scanner", a, f"k{k}", "application/json", "{}", b"{}", "test")))
    events = [{"id": f"evt_{n + 1}", "seq": n + 1, "received_at": at} for n, at in enumerate(received)]
    for order in ("-received_at", "received_at", "id"):
        seen, _ = await walk(c, f"/ui/events?sort={order}&limit=4", "evt_")
        column = order.removeprefix("-").replace("id", "seq")
        expected = sorted(events, key=lambda e: (e[column], e["seq"]), reverse=order.startswith("-"))
        assert seen == [e["id"] for e in expected], order

    rows = [delivery_rows.NewDelivery("all", "ok", "event.received", None, f"evt_{n + 1}", f"o{n}", f"i{n}", None)
            for n in range(23)]
    c.hub.store.write_sync(lambda conn: delivery_rows.insert(conn, rows, iso(T0)))
    made = []
    for seq in range(1, 24):
        state = ("pending", "dead", "done")[seq % 3]
        tries, due = rnd.randrange(4), iso(T0 + 3600 * 24 * 365 + rnd.randrange(3))
        force(c.hub.store.conn, "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ? WHERE seq = ?",
              state, tries, due, seq)
        made.append({"id": f"dlv_{seq}", "seq": seq, "state": state, "attempts": tries, "next_attempt_at": due})
    for query, column, chosen in (("sort=-attempts", "attempts", made),
                                  ("sort=attempts&state=dead", "attempts", [d for d in made if d["state"] == "dead"]),
                                  ("sort=next_attempt&state=pending&target=ok", "next_attempt_at",
                                   [d for d in made if d["state"] == "pending"])):
        seen, _ = await walk(c, f"/ui/deliveries?{query}&limit=3", "dlv_")
        expected = sorted(chosen, key=lambda d: (d[column], d["seq"]), reverse="sort=-" in query)
        assert seen == [d["id"] for d in expected], query
    assert 'href="?state=pending&amp;target=ok&amp;sort=next_attempt">Next attempt' in await c.page(
        "/ui/deliveries?state=pending&target=ok")
    for without in ("", "?state=pending", "?target=ok"):  # not a link: that order needs both
        assert ">Next attempt</th>" in await c.page(f"/ui/deliveries{without}")


ORDERS = {"events": ["-id", "id", "-received_at", "received_at"],
          "deliveries": ["-id", "id", "-attempts", "attempts", "next_attempt", "-next_attempt"],
          "findings": ["-severity", "severity", "-last_seen", "last_seen", "sla_due_at", "-sla_due_at"]}


@pytest.mark.sqlite_only
async def test_every_order_walks_an_index_from_its_cursor(console):
    """EXPLAIN QUERY PLAN of each page's query, first and deep: a search of an index in the order (no sort of the
    rows, no scan from the start). Not the findings' first seen (the default order, as before sorting): an index on
    it made the asset filter slow (migration 0010)."""
    c = console
    store_findings(c, 30)
    c.hub.store.write_sync(lambda conn: [event_rows.insert(conn, event_rows.NewEvent(
        "scanner", iso(T0 + n), f"k{n}", "application/json", "{}", b"{}", "test")) for n in range(5)])
    c.hub.store.write_sync(lambda conn: delivery_rows.insert(conn, [delivery_rows.NewDelivery(
        "all", "ok", "event.received", None, "evt_1", f"o{n}", f"i{n}", None) for n in range(5)], iso(T0)))
    statements: list[str] = []
    c.hub.store.conn.set_trace_callback(statements.append)
    try:
        for name, orders in ORDERS.items():
            for order in orders:
                query = {"sort": order, "limit": "2",
                         **({"state": "pending", "target": "ok"} if "next_attempt" in order else {})}
                html = await c.page(f"/ui/{name}?{urlencode(query)}")
                deep = re.search(r'<a href="(\?[^"]+)" rel="next">', html).group(1).replace("&amp;", "&")
                statements.clear()
                await c.page(f"/ui/{name}{deep}")
                [sql] = [s for s in statements if " LIMIT " in s and f"FROM {name}" in s]
                plan = " | ".join(r[3] for r in c.hub.store.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
                assert "TEMP B-TREE" not in plan and re.search(r"^SEARCH \w+ USING (COVERING )?INDEX|"
                                                               r"^SEARCH \w+ USING INTEGER PRIMARY KEY", plan), \
                    (name, order, plan)
    finally:
        c.hub.store.conn.set_trace_callback(None)
