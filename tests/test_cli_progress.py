"""Long CLI work (issue 14): a progress bar on a terminal, one summary line otherwise, and the bulk work still
done page by page."""

from __future__ import annotations

from pathlib import Path

import pytest
from click import _termui_impl
from click.testing import CliRunner

from hub.cli import main, progress
from hub.ids import iso
from hub.store import SqliteStore
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from tests.support import write_config

OLD = 1_000_000.0  # 1970: older than any retention window


def fill(tmp_path: Path) -> Path:
    """A store with 7 failed events (6 of source a), 5 dead deliveries, and 4 old done ones; returns the config."""
    config = write_config(tmp_path / "hub.yaml", {"storage": {"path": str(tmp_path / "hub.db")}})
    store = SqliteStore(tmp_path / "hub.db")

    def rows(conn):
        for i in range(7):
            event_id, _ = event_rows.insert(conn, event_rows.NewEvent("a" if i else "b", iso(OLD), f"k{i}", None,
                                                                      "{}", b"{}", "hmac"))
            event_rows.mark_failed(conn, event_rows.parse_id(event_id) or 0, "broken", iso(OLD))
        outbox.insert(conn, [outbox.NewDelivery("r", "t", "finding.created", f"fnd_{i}", None, f"fnd_{i}", f"k{i}",
                                                None) for i in range(9)], iso(OLD))
        outbox.record(conn, [outbox.Result(i + 1, "dead" if i < 5 else "done", None, 400, "no", "permanent", 1.0)
                             for i in range(9)], iso(OLD))

    store.write_sync(rows)
    store.conn.close()
    return config


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout is a terminal, as far as the command and click's bar can tell."""
    monkeypatch.setattr(progress, "is_terminal", lambda: True)
    monkeypatch.setattr(_termui_impl, "isatty", lambda stream: True)


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_not_a_terminal_prints_one_summary_line(tmp_path):
    config = str(fill(tmp_path))
    assert run("events", "reprocess", "--failed", "--source", "a", "--page", "4", "--config", config) == \
        "6 event(s) queued for processing\n"
    assert run("events", "reprocess", "--failed", "--config", config) == "1 event(s) queued for processing\n"
    assert run("deliveries", "replay", "--state", "dead", "--page", "2", "--config", config) == \
        "5 delivery(ies) queued again\n"
    assert run("prune", "--config", config).count("\n") == 1


def test_a_terminal_gets_a_bar_then_the_summary(tmp_path, terminal):
    config = str(fill(tmp_path))
    out = run("events", "reprocess", "--failed", "--page", "3", "--config", config)
    assert "reprocessing" in out and "7/7" in out and out.endswith("7 event(s) queued for processing\n")
    out = run("deliveries", "replay", "--state", "dead", "--page", "2", "--config", config)
    assert "replaying" in out and "5/5" in out and out.endswith("5 delivery(ies) queued again\n")
    out = run("prune", "--config", config)
    # the rest went back to pending
    assert "pruning" in out and out.rstrip().splitlines()[-1].startswith("pruned 4 deliveries, 0 events")
    total = 9 + 7  # max seq of deliveries and events; no audit rows
    assert f"{total}/{total}" in out
