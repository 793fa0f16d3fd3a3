"""What a client controls stays bounded in the receiver: log lines, stored headers, and a body that never comes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from hub.redact import clip
from hub.store import events as event_rows
from tests.support import base_config


@pytest.fixture
def config_data(tmp_path: Path) -> dict[str, Any]:
    data = base_config(tmp_path)
    data["server"]["max_header_bytes"] = 1_048_576
    return data


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hub.receiver"]


async def test_a_401_with_a_1_mib_header_logs_a_few_kib(client, caplog):
    caplog.set_level(logging.WARNING, logger="hub.receiver")
    big = "v" * 1_000_000  # with the other headers, just under max_header_bytes (1 MiB): it reaches verification
    r = await client.post("/hooks/se", content=b"{}", headers={"content-type": "application/json",
                                                                "x-se-signature": "00", "user-agent": "u" * 20_000,
                                                                "x-big": big})
    assert r.status_code == 401
    [line] = _records(caplog)
    assert "x-big" in line and "more]" in line and len(line) < 4 * 1024


async def test_an_unknown_source_with_a_1_mib_name_logs_and_answers_a_few_kib(hub, caplog):
    caplog.set_level(logging.WARNING, logger="hub.receiver")
    scope = {"type": "http", "method": "POST", "path": "/hooks/" + "n" * 1_048_576, "headers": []}
    sent = await _call(hub, scope, [{"type": "http.request", "body": b"{}"}])
    assert sent[0]["status"] == 404 and len(sent[1]["body"]) < 1024
    [line] = _records(caplog)
    assert len(line) < 1024


async def test_headers_over_the_limit_never_reach_the_store(client, hub):
    """`hub serve`'s edge answers 431 first (test_edge.py); the receiver holds the line under any ASGI server."""
    r = await client.post("/hooks/se", content=b"{}", headers={"x-big": "b" * 1_048_576})
    assert r.status_code == 431 and r.json()["code"] == "headers_too_large"
    assert event_rows.counts(hub.store.conn) == {}


async def test_a_client_gone_before_its_body_gets_no_answer_and_no_413(hub, caplog):
    """The edge drops a slow body (408, then closed): the receiver sees a disconnect, which is nobody to answer,
    not a body over the size limit."""
    caplog.set_level(logging.WARNING, logger="hub.receiver")
    scope = {"type": "http", "method": "POST", "path": "/hooks/se", "headers": [(b"content-type", b"application/json")]}
    sent = await _call(hub, scope, [{"type": "http.request", "body": b'{"a": ', "more_body": True},
                                    {"type": "http.disconnect"}])
    assert sent == [] and _records(caplog) == []


async def _call(hub: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The receiver called as the ASGI server would: ``incoming`` messages in, what it sent out."""
    messages = iter(incoming)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await hub.receiver(scope, receive, send)
    return sent


def test_clip_bounds_any_value_and_says_how_much_was_cut():
    assert clip("short") == "short"
    assert clip("x" * 1000, 10) == "x" * 10 + "...[990 more]"
    assert clip(b"\x00" * 5, 4).endswith("more]")


async def test_an_event_failing_on_a_huge_client_value_logs_a_few_kib(tmp_path, caplog):
    """Processing reasons quote the sender's values (an unknown severity): the log line is clipped."""
    from tests.support import HubHarness, scanner_source

    caplog.set_level(logging.WARNING, logger="hub.pipeline")
    data = {"storage": {"path": str(tmp_path / "hub.db")},
            "sources": {"scanner": scanner_source({"title": "item.title", "severity": "item.severity",
                                                   "tool_id": "item.id"})}}
    async with HubHarness.running(tmp_path, data, scheduler=False) as h:
        await h.send([{"id": "x", "severity": "catastrophic" * 50_000, "title": "t"}])
        await h.until(lambda: h.events("failed") == 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.pipeline"]
    assert lines and all(len(line) < 4 * 1024 for line in lines), [len(line) for line in lines]
