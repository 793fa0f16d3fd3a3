"""Search in the console (issue 14): text and a JSON path in stored event bodies, bounded by a received-at window
of at most 7 days; findings by fingerprint and by CVE; the search box sends a fingerprint or a CVE id to its list.

The hub runs in-process behind an ASGI client (tests/test_console.py's harness); rows are written to the store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from hub.ids import iso
from hub.models import Finding
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from tests.test_console import Console, linked, running

DAY = 86400.0
BODIES = [  # (source, days ago, body): evt_1 .. evt_5
    ("scanner", 1, b'{"data": {"finding_id": "F-1", "n": 5}}'),
    ("scanner", 1, b'{"data": {"finding_id": "F-2"}, "note": "needle"}'),
    ("other", 0.5, b"not json, a needle in plain text"),
    ("scanner", 10, b'{"data": {"finding_id": "F-1"}, "note": "needle"}'),  # outside every window below
    ("other", 0.5, b'\xff\x00{"data": {"finding_id": "F-1"}}'),  # not text: never matches a path, no error
]


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with running(tmp_path) as c:
        await c.login(c.token("read"))
        yield c


def store_events(c: Console) -> None:
    now = time.time()
    for n, (source, ago, body) in enumerate(BODIES):
        c.hub.store.write_sync(lambda conn, s=source, a=ago, b=body, k=n: event_rows.insert(conn, event_rows.NewEvent(
            s, iso(now - a * DAY), f"k{k}", "application/json", "{}", b, "test")))


def events_url(**params: str) -> str:
    return "/ui/events?" + urlencode(params)


def days_ago(days: float) -> str:
    return iso(time.time() - days * DAY)


async def test_text_in_the_body_lists_exactly_the_events_that_contain_it(console):
    c = console
    store_events(c)
    assert linked(await c.page(events_url(q="needle", since=days_ago(3))), "evt_") == ["evt_3", "evt_2"]
    assert linked(await c.page(events_url(q="needle", since=days_ago(3), source="scanner")), "evt_") == ["evt_2"]
    assert linked(await c.page(events_url(q="needle", since=days_ago(3), limit="1")), "evt_") == ["evt_3"]
    assert linked(await c.page(events_url(q="needle", since=days_ago(3), before="evt_3")), "evt_") == ["evt_2"]
    assert "Nothing matches" in await c.page(events_url(q="Needle", since=days_ago(3)))  # bytes, case and all
    csv = (await c.client.get("/ui/events.csv?" + urlencode({"q": "needle", "since": days_ago(3)}))).text
    assert "evt_3" in csv and "evt_2" in csv and "evt_1" not in csv and "evt_4" not in csv


async def test_a_json_path_lists_exactly_the_events_with_that_value_there(console):
    c = console
    store_events(c)
    since = days_ago(3)
    assert linked(await c.page(events_url(path="$.data.finding_id", value="F-1", since=since)), "evt_") == ["evt_1"]
    assert linked(await c.page(events_url(path="$.data.finding_id", value="F-2", since=since)), "evt_") == ["evt_2"]
    assert linked(await c.page(events_url(path="$.data.n", value="5", since=since)), "evt_") == ["evt_1"]
    assert "Nothing matches" in await c.page(events_url(path="$.data.finding_id", value="F-9", since=since))
    wide = event_rows.listing(c.hub.store.conn, path="$.data.finding_id", path_value="F-1")
    assert [r["id"] for r in wide] == ["evt_4", "evt_1"]  # the window, not the path, keeps evt_4 out above


@pytest.mark.parametrize("params, says", [
    ({"q": "needle"}, "needs since"),
    ({"q": "needle", "until": iso(time.time())}, "needs since"),
    ({"q": "needle", "since": iso(time.time() - 8 * DAY)}, "at most 7 days"),
    ({"q": "needle", "since": iso(time.time() - 20 * DAY), "until": iso(time.time() - 12 * DAY)}, "at most 7 days"),
    ({"path": "$.data.finding_id", "value": "F-1"}, "needs since"),
    ({"path": "$.data.finding_id", "value": "F-1", "since": iso(time.time() - 8 * DAY)}, "at most 7 days"),
])
async def test_a_body_search_without_a_window_of_at_most_7_days_is_a_400(console, params, says):
    html = await console.page(events_url(**params), 400)
    assert says in html and "body" in html
    assert (await console.client.get("/ui/events.csv?" + urlencode(params))).status_code == 400


async def test_a_window_of_7_days_is_enough_and_other_filters_need_none(console):
    c = console
    store_events(c)
    assert linked(await c.page(events_url(q="needle", since=days_ago(6.9))), "evt_") == ["evt_3", "evt_2"]
    assert linked(await c.page(events_url(q="needle", since=days_ago(12), until=days_ago(5.5))), "evt_") == ["evt_4"]
    assert len(linked(await c.page("/ui/events?source=scanner"), "evt_")) == 3


@pytest.mark.parametrize("path", ["data.finding_id", "$..x", "$.data')--", "$.a b", "$[x]", "$.data.", "$.\"k\""])
async def test_a_bad_json_path_is_a_400_before_any_query(console, path):
    store_events(console)
    html = await console.page(events_url(path=path, value="1", since=days_ago(1)), 400)
    assert "path must be a JSON path" in html


async def test_a_path_and_a_value_go_together(console):
    assert "go together" in await console.page(events_url(path="$.data.n", since=days_ago(1)), 400)
    assert "go together" in await console.page(events_url(value="5", since=days_ago(1)), 400)


def store_findings(c: Console) -> None:
    for n, cves in enumerate((["CVE-2024-1234", "CVE-2023-9"], ["cve-2024-1234"], ["CVE-2024-12345"], [])):
        f = Finding.model_validate({"id": f"fnd_{n:026d}", "fingerprint": f"{n:x}" * 32, "source": "scanner",
                                    "title": f"finding {n}", "severity": "high", "cve": cves,
                                    "first_seen": iso(1_790_000_000 + n), "last_seen": iso(1_790_000_000 + n)})
        c.hub.store.write_sync(lambda conn, f=f: finding_rows.save(conn, f, None, iso()))


async def test_findings_by_fingerprint_and_by_cve_are_exact(console):
    c = console
    store_findings(c)
    ids = [f"fnd_{n:026d}" for n in range(4)]
    assert linked(await c.page("/ui/findings?fingerprint=" + "2" * 32), "fnd_") == [ids[2]]
    assert "Nothing matches" in await c.page("/ui/findings?fingerprint=" + "2" * 31)
    assert linked(await c.page("/ui/findings?cve=CVE-2024-1234"), "fnd_") == [ids[1], ids[0]]
    assert linked(await c.page("/ui/findings?cve=cve-2023-9"), "fnd_") == [ids[0]]
    assert linked(await c.page("/ui/findings?cve=CVE-2024-12345"), "fnd_") == [ids[2]]
    assert "Nothing matches" in await c.page("/ui/findings?cve=CVE-2024-123")


@pytest.mark.parametrize("q, location", [
    ("ABCDEF0123456789abcdef0123456789", "/ui/findings?fingerprint=abcdef0123456789abcdef0123456789"),
    ("cve-2024-1234", "/ui/findings?cve=CVE-2024-1234"),
    (" CVE-2021-44228 ", "/ui/findings?cve=CVE-2021-44228"),
    ("abcdef0123456789abcdef012345678", "/ui/findings?asset=abcdef0123456789abcdef012345678"),  # 31 digits
    ("CVE-24-1", "/ui/findings?asset=CVE-24-1"),
    ("fnd_0123", "/ui/findings/fnd_0123"),
])
async def test_the_search_box_sends_a_fingerprint_or_a_cve_to_its_findings(console, q, location):
    r = await console.client.get("/ui/go?" + urlencode({"q": q}))
    assert r.status_code == 303 and r.headers["location"] == location
