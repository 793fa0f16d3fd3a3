"""Processing never spins and never gives up on a passing fault: a poison event fails alone and once, a body
the hub could not encode again is refused at the door, and a store that refuses writes leaves events pending."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from hub import jsonlimits
from hub.cli import main
from hub.errors import StoreUnavailableError
from hub.store import SqliteStore
from hub.store import events as event_rows
from tests.support import SW_SECRET, HubHarness, events_of, scanner_source, write_config


def nested(levels: int) -> Any:
    doc: Any = "bottom"
    for _ in range(levels):
        doc = {"x": doc}
    return doc


def config(tmp_path: Path, **pipeline: Any) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "severity": "item.severity",
                                               "tool_id": "item.id"})},
        "routes": [{"name": "all", "on": ["finding.created"], "to": ["archive"]}],
        "targets": {"archive": {"type": "file", "path": "out/archive.ndjson"}},
        "pipeline": {"safety_net_secs": 0.2, **pipeline},
    }


def store_raw(tmp_path: Path, bodies: list[Any]) -> None:
    """Events as a hub before the nesting limit (or a poll page, or an import) left them: pending, unchecked."""
    store = SqliteStore(tmp_path / "hub.db")
    for i, body in enumerate(bodies):
        ev = event_rows.NewEvent("scanner", "2026-12-01T00:00:00.000000Z", f"k{i}", "application/json", "{}",
                                 json.dumps(body).encode(), "standard-webhooks")  # orjson cannot write it
        store.write_sync(lambda conn, ev=ev: event_rows.insert(conn, ev))
    store.conn.close()


def finding(i: int, **extra: Any) -> dict[str, Any]:
    return {"findings": [{"id": f"F-{i}", "title": f"Finding {i}", "severity": "high", **extra}]}


@pytest.mark.slow
async def test_a_body_nested_deeper_than_the_limit_is_refused_at_intake(tmp_path: Path) -> None:
    async with HubHarness.running(tmp_path, config(tmp_path)) as h:
        raw = orjson.dumps(finding(1, detail=nested(jsonlimits.MAX_DEPTH)))
        headers = {"content-type": "application/json", **h.signer.sign(raw, time.time(), "msg_deep")}
        r = await h.client.post("/hooks/scanner", content=raw, headers=headers)
        assert r.status_code == 400
        assert r.json()["code"] == "too_deep"
        assert events_of(h.hub.store.conn) == []


@pytest.mark.slow
async def test_the_deepest_accepted_body_goes_all_the_way_to_a_delivery(tmp_path: Path) -> None:
    """The limit is one for parser and encoder: whatever intake accepts, the finding's raw copy, the delivery
    snapshot and the target's payload can all be encoded."""
    deepest = finding(1, detail=nested(jsonlimits.MAX_DEPTH - 3))  # {findings: [{detail: ...}]} is 3 levels
    assert jsonlimits.depth(deepest) == jsonlimits.MAX_DEPTH
    async with HubHarness.running(tmp_path, config(tmp_path), wait=True) as h:
        await h.post("scanner", deepest)
        assert h.events("processed") == 1
        assert h.states() == {"done": 1}


@pytest.mark.slow
async def test_a_poison_event_fails_alone_and_once_while_later_events_go_on(tmp_path: Path) -> None:
    """Bodies the encoder refuses, more of them than a round takes, ahead of a good one: each fails once with its
    reason, and the good one is processed (it used to wait forever behind them while the loop spun)."""
    poison = [finding(i, detail=nested(300)) for i in range(6)]
    store_raw(tmp_path, [*poison, finding(99)])
    async with HubHarness.running(tmp_path, config(tmp_path, batch_events=5)) as h:
        await h.until(lambda: h.events("processed") == 1 and h.events("failed") == 6)
        await asyncio.sleep(0.5)  # several safety-net ticks: nothing is taken again
        failed = events_of(h.hub.store.conn, state="failed")
        assert all(e["attempts"] == 1 for e in failed)
        assert all("Recursion limit" in e["error"] for e in failed)
        assert h.states() == {"done": 1}


def test_events_show_works_on_an_event_too_deep_to_encode(tmp_path: Path) -> None:
    write_config(tmp_path / "hub.yaml", config(tmp_path))
    store_raw(tmp_path, [finding(1, detail=nested(300))])
    result = CliRunner().invoke(main, ["events", "show", "evt_1", "--config", str(tmp_path / "hub.yaml")])
    assert result.exit_code == 0, result.output
    assert '"body": "{\\"findings\\"' in result.output  # shown as the text it is


@pytest.mark.slow
async def test_a_store_that_refuses_writes_leaves_events_pending_and_the_loop_backs_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A passing fault (disk full, busy) is not the event's fault: it stays pending and is processed once the
    store takes writes again, and meanwhile the pipeline does not retry in a tight loop."""
    async with HubHarness.running(tmp_path, config(tmp_path), timeout=15) as h:
        real_write = h.hub.store.write
        attempts = 0
        failing = True

        async def flaky_write(fn: Any, *, single_statement: bool = False) -> Any:
            nonlocal attempts
            if failing and not single_statement:  # intake (one statement) works; processing jobs do not
                attempts += 1
                raise StoreUnavailableError("the store cannot commit: database or disk is full")
            return await real_write(fn, single_statement=single_statement)

        monkeypatch.setattr(h.hub.store, "write", flaky_write)
        await h.post("scanner", finding(1))
        await asyncio.sleep(2.0)
        assert h.events("pending") == 1 and h.events("failed") == 0
        assert 1 <= attempts <= 6, attempts  # backoff 0.5, 1, 2 s: not hundreds of tries
        failing = False
        await h.until(lambda: h.events("processed") == 1)
        await h.until(h.settled)
        assert [(e["attempts"], e["error"]) for e in events_of(h.hub.store.conn)] == [(1, None)]


def test_transient_is_part_of_the_error_type() -> None:
    from hub.errors import AdapterError, HubError, TemplateError, is_transient

    assert is_transient(StoreUnavailableError("busy"))
    assert not is_transient(AdapterError("bad field"))
    assert not is_transient(TemplateError("x"))
    assert not is_transient(TypeError("Recursion limit reached"))
    assert not HubError.transient
    assert SW_SECRET  # the scanner source signs with it
