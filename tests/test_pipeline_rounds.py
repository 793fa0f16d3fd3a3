"""A round's events are applied together: one write job and one statement taking them all, each event still
applied (or failed, or skipped) on its own. On whichever engine the suite runs (HUB_TEST_STORE)."""

from __future__ import annotations

import contextvars
import re
from pathlib import Path
from typing import Any

import pytest

from hub.errors import StoreUnavailableError
from hub.store import events as event_rows
from hub.store.conn import Conn
from tests.support import HubHarness, events_of, findings_of, scanner_source

TAKES = re.compile(r"UPDATE events SET state = 'processed'")


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "storage": {"path": str(tmp_path / "hub.db")},
        "sources": {"scanner": scanner_source({"title": "item.title", "severity": "item.severity",
                                               "tool_id": "item.id"})},
        "routes": [{"name": "all", "on": ["finding.created", "finding.updated"], "to": ["archive"]}],
        "targets": {"archive": {"type": "file", "path": "out/archive.ndjson"}},
        "pipeline": {"safety_net_secs": 0.2, "batch_events": 50},
    }


class Recording:
    """A connection that notes every statement run through it."""

    def __init__(self, conn: Conn, seen: list[str]):
        self._conn, self._seen = conn, seen

    def execute(self, sql: str, *args: Any) -> Any:
        self._seen.append(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._seen.append(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def finding(i: int, severity: str = "high") -> dict[str, Any]:
    return {"id": f"F-{i}", "title": f"Finding {i}", "severity": severity}


async def held(h: HubHarness, bodies: list[dict[str, Any]]) -> None:
    """Store ``bodies`` while the pipeline waits (no leader), so that one round finds them all."""
    h.hub.leadership.leader = False
    for body in bodies:
        await h.send([body], wait=False)
    assert h.events("pending") == len(bodies)


async def test_a_round_takes_its_events_with_one_statement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with HubHarness.running(tmp_path, config(tmp_path), scheduler=False) as h:
        await held(h, [finding(i) for i in range(8)] + [finding(0, "critical")])  # F-0 twice: created, updated
        seen: list[str] = []
        real = h.hub.store.write

        async def recording(fn: Any, **kw: Any) -> Any:
            return await real(lambda conn: fn(Recording(conn, seen)), **kw)

        monkeypatch.setattr(h.hub.store, "write", recording)
        h.hub.leadership.leader = True
        h.hub.pipeline.wake()
        await h.until(lambda: h.events("processed") == 9)
        assert len([sql for sql in seen if TAKES.match(sql)]) == 1
        assert all(e["attempts"] == 1 and e["error"] is None for e in events_of(h.hub.store.conn))
        f0 = next(f for f in findings_of(h.hub.store.conn) if f.tool_id == "F-0")
        assert f0.severity == "critical"  # its two steps applied in the order they arrived


async def test_an_event_whose_apply_fails_fails_alone_and_the_rest_of_its_round_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with HubHarness.running(tmp_path, config(tmp_path), scheduler=False) as h:
        await held(h, [finding(i) for i in range(6)])
        recorder = h.hub.pipeline.recorder
        real_record = recorder.record

        def record(conn: Conn, change: Any, *args: Any) -> Any:
            if change.finding.tool_id == "F-3":
                raise ValueError("a template this finding breaks")
            return real_record(conn, change, *args)

        monkeypatch.setattr(recorder, "record", record)
        h.hub.leadership.leader = True
        h.hub.pipeline.wake()
        await h.until(lambda: h.events("processed") == 5 and h.events("failed") == 1)
        failed = events_of(h.hub.store.conn, state="failed")
        assert [(e["attempts"], e["error"]) for e in failed] == [(1, "ValueError: a template this finding breaks")]
        assert sorted(str(f.tool_id) for f in findings_of(h.hub.store.conn)) == ["F-0", "F-1", "F-2", "F-4", "F-5"]
        assert all(e["attempts"] == 1 for e in events_of(h.hub.store.conn, state="processed"))


async def test_apply_all_skips_an_event_taken_meanwhile(tmp_path: Path) -> None:
    """A reprocess (or another process) took one of the round's events between the read and the write: it is not
    applied twice, the others are."""
    from hub.pipeline import _Ready  # the round's unit; built here as the pipeline builds it

    async with HubHarness.running(tmp_path, config(tmp_path), scheduler=False) as h:
        await held(h, [finding(i) for i in range(3)])
        store, pipeline = h.hub.store, h.hub.pipeline
        rows = await store.peek(lambda conn: event_rows.pending(conn, 10, "9999"))
        ready = [_Ready(row, row.event(), pipeline.parsers.parse(row.event()), 1_000.0, contextvars.copy_context())
                 for row in rows]
        store.write_sync(lambda conn: event_rows.take(conn, rows[1].seq, "2026-12-05T00:00:00.000000Z"))
        outcomes = await store.write(lambda conn: pipeline.apply_all(conn, ready))
        assert [o is not None for o in outcomes] == [True, False, True]
        assert sorted(str(f.tool_id) for f in findings_of(store.conn)) == ["F-0", "F-2"]
        assert h.events("pending") == 0


async def test_a_store_refusing_the_rounds_write_leaves_every_event_pending_without_trying_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient fault of the shared job is not one event's failure: nothing fails, nothing goes alone (a job per
    event against a refusing store), and all of them are processed once it takes writes."""
    async with HubHarness.running(tmp_path, config(tmp_path), scheduler=False) as h:
        await held(h, [finding(i) for i in range(5)])
        real, jobs, refusing = h.hub.store.write, [0], True

        async def refuse(fn: Any, **kw: Any) -> Any:
            if refusing and not kw.get("single_statement"):
                jobs[0] += 1
                raise StoreUnavailableError("the store cannot commit: database or disk is full")
            return await real(fn, **kw)

        pipeline, alone = h.hub.pipeline, [0]
        real_commit = pipeline._commit

        async def commit(ready: Any) -> Any:
            alone[0] += 1
            return await real_commit(ready)

        monkeypatch.setattr(h.hub.store, "write", refuse)
        monkeypatch.setattr(pipeline, "_commit", commit)
        h.hub.leadership.leader = True
        pipeline.wake()
        await h.until(lambda: jobs[0] >= 2)  # two rounds (the second after the backoff)
        assert alone[0] == 0  # each round one shared job, no job per event
        assert h.events("pending") == 5 and h.events("failed") == 0
        refusing = False
        await h.until(lambda: h.events("processed") == 5, timeout=10)
        assert all(e["attempts"] == 1 and e["error"] is None for e in events_of(h.hub.store.conn))
