"""Ids taken from vendor answers and put into URL paths (Freshservice ticket ids, Notion page ids, SecuProbe scan
ids) stay one path segment: a hostile id cannot change which path or query the next request reaches. Asserted
on what the fake vendor receives (or, for a rendered request, on the URL httpx would send)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub.connector import Outcome, Ref
from hub.urlpath import segment
from tests.connectors import test_freshservice as fs
from tests.connectors import test_notion as notion
from tests.test_polling import make_hub

HOSTILE = ["../x", "a/b", "?q=1", "%2e%2e", "..", ".", "1#frag", "1/../../admin"]


class Vendor:
    """An ASGI app that records (method, raw path, query) of every request and answers with ``answer(path)``."""

    def __init__(self, answer: Callable[[str], Any]):
        self.answer, self.seen = answer, []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append((scope["method"], scope["raw_path"].decode(), scope["query_string"].decode()))
        body = orjson.dumps(self.answer(scope["path"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def test_segment_keeps_an_id_one_path_segment():
    for hostile in HOSTILE:
        escaped = segment(hostile)
        assert "/" not in escaped and "?" not in escaped and "#" not in escaped and escaped.strip(".") != ""
        url = httpx.URL(f"https://vendor.test/tickets/{escaped}")
        assert url.raw_path == f"/tickets/{escaped}".encode() and url.query == b"" and url.fragment == ""
    assert segment("12345") == "12345" and segment("0d6bd3f4-1e53-4c1f-9a0e-3f1c2b7d8e9a") == \
        "0d6bd3f4-1e53-4c1f-9a0e-3f1c2b7d8e9a"
    with pytest.raises(ValueError):
        segment("")


@pytest.mark.parametrize("ticket", HOSTILE)
async def test_freshservice_ticket_ids_from_answers_are_escaped_in_every_path(ticket):
    vendor = Vendor(lambda path: {"ticket": {"id": ticket, "status": 4}})
    c = fs.connector()
    async with fs.client(c, vendor) as client:
        verdict = await c.deliver(client, fs.item("finding.resolved", ref=fs.linked(ticket)))
        assert verdict.outcome is Outcome.OK, verdict.reason
        await c.read_status(client, [Ref(fs.FID, "fs", ticket, None, "Open", "linked")])
    expected = f"/api/v2/tickets/{segment(ticket)}"
    assert vendor.seen == [("PUT", expected, ""), ("POST", f"{expected}/notes", ""), ("GET", expected, "")]
    assert verdict.remote_url == f"{fs.URL}/a/tickets/{segment(ticket)}"


@pytest.mark.parametrize("page_id", HOSTILE)
def test_notion_page_ids_are_escaped_in_the_paths_of_update_requests(page_id):
    c = notion.connector()
    ref = Ref("fnd_01JDEMO0000000000000000001", "tickets", page_id, "https://notion.so/x", None, "linked")
    outs = c.render(notion.item("reopened", ref=ref))
    paths = [httpx.URL(o.url) for o in outs if o.method == "PATCH"]
    assert paths, [o.url for o in outs]
    for url in paths:  # httpx.URL: what would really be sent (it resolves a bare "..")
        assert url.query == b"" and url.raw_path in (f"/v1/pages/{segment(page_id)}".encode(),
                                                     f"/v1/blocks/{segment(page_id)}/children".encode())


async def test_secuprobe_scan_ids_from_the_list_are_escaped(tmp_path: Path):
    scans = [{"scanId": s, "url": "https://x.example"} for s in HOSTILE]

    def answer(path: str) -> Any:
        if path == "/api/v1/scans":
            return {"scans": scans}
        if path.endswith("/vulnerabilities"):
            return {"total": 0, "vulnerabilities": []}
        return {"scanId": "?", "url": "https://x.example", "status": "completed"}

    vendor = Vendor(answer)
    poll = {"url": "http://sp.test/api/v1/scans", "auth": {"bearer": "sp_live_test"}, "mode": "secuprobe"}
    async for hub in make_hub(tmp_path, poll, vendor, adapter="secuprobe"):
        await hub.pollers["platform"].run()
    expected = [("GET", "/api/v1/scans", "")]
    for s in HOSTILE:
        expected += [("GET", f"/api/v1/scans/{segment(s)}", ""), ("GET", f"/api/v1/scans/{segment(s)}/vulnerabilities",
                                                                   "")]
    assert vendor.seen == expected
