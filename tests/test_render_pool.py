"""The render process: SIEM batches encoded in a child process reach the vendor byte-for-byte as the event
loop would have encoded them, a template error fails its item alone, and a dead child costs nothing."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub import render_pool, signatures
from hub.connector import Item, Outcome, SupportsEncode, TargetConfig, Verdict
from hub.connector.batching import BatchConnector
from hub.delivery import Worker, dispatcher
from hub.mappings import BUILTIN_ROOT
from hub.models import Finding
from hub.registry import connector_class
from hub.render_pool import Spec
from hub.settings import load_config
from hub.store import deliveries as outbox
from hub.store.deliveries import ClaimedDelivery
from tests.connectors.test_splunk_hec import delivered_ids, findings, harness, hub_config
from tests.fakes.splunk_hec import fake_hec, keys
from tests.support import SW_SECRET, HubHarness, HubProcess, LoopbackServer, deliveries_of, free_port, write_config
from tests.test_examples import EXAMPLES, dummy_env

SIEM_TYPES = ("splunk_hec", "sentinel", "elastic")
SEEN = "2026-11-22T10:00:00.000Z"


def siem_config(tmp_path: Path, **target: Any) -> dict[str, Any]:
    """HEC behind the fake, batches collected for up to a second so that one webhook makes one big batch."""
    data = hub_config(tmp_path, **target)
    data["targets"]["splunk"]["batch"] = {"timeout_secs": 1.0, "in_flight": 2}
    data["pipeline"]["render_process"] = True
    return data


def all_rows(h: HubHarness) -> list[outbox.ClaimedDelivery]:
    return outbox.peek(h.hub.store.conn, [d["seq"] for d in deliveries_of(h.hub.store.conn)])


def batches(h: HubHarness, where: str = "process") -> float:
    """SIEM batches of the target encoded in the render process (or the loop), from the hub's metrics."""
    value = h.hub.metrics.registry.get_sample_value("hub_render_batches_total", {"target": "splunk", "where": where})
    return value or 0.0


async def started(h: HubHarness) -> render_pool.RenderPool:
    pool = h.hub.dispatcher.render_pool
    assert pool is not None and await pool.start(), "the render process did not start"
    return pool


@pytest.mark.slow
async def test_the_child_sends_what_the_loop_would_have_sent(tmp_path):
    app = fake_hec()
    async with harness(tmp_path, siem_config(tmp_path), app) as h:
        await started(h)
        await h.send(findings(0, 999))  # one event.received and 999 findings: one batch of 1,000
        await h.until(lambda: h.settled(1_000))
        assert h.states() == {"done": 1_000} and set(keys(app).values()) == {1}
        assert batches(h) == 1, "the batch should have been encoded by the child"
        worker: Worker = h.hub.dispatcher.workers["splunk"]
        sent = {e["fields"]["idempotency_key"]: e for e in app.state.events}
        rows = all_rows(h)
        inline = {item.idempotency_key: orjson.loads(worker.connector.encode(item))  # type: ignore[attr-defined]
                  for item in await worker.source.items(rows)}
        assert len(sent) == 1_000 and sent == inline  # the finding deliveries and the raw event.received alike


@pytest.mark.slow
async def test_a_template_error_in_the_child_fails_its_item_alone(tmp_path):
    # finding["raw"] takes any key at load (it is a dict), so only the run finds "nope" missing
    folder = tmp_path / "mapping"
    shutil.copytree(BUILTIN_ROOT / "splunk_hec", folder)
    template = folder / "event.json.j2"
    poisoned = '{%- set asset = finding["raw"]["nope"] if finding["title"] == "poison" else finding["asset"] -%}'
    template.write_text(template.read_text().replace('{%- set asset = finding["asset"] -%}', poisoned))
    app = fake_hec()
    async with harness(tmp_path, siem_config(tmp_path, mapping=str(folder)), app) as h:
        await started(h)
        await h.send(findings(0, 150) + findings(150, 1, title="poison") + findings(151, 149))
        await h.until(lambda: h.settled(301))
        assert batches(h) >= 1
        assert h.states() == {"done": 300, "dead": 1}
        [dead] = deliveries_of(h.hub.store.conn, state="dead")
        error = dead["last_error"]
        assert error.startswith("template error:") and "event.json.j2" in error and "nope" in error
        assert delivered_ids(app) == sorted(f"F-{i}" for i in range(300) if i != 150)


@pytest.mark.slow
async def test_a_batch_whose_every_template_fails_sends_nothing(tmp_path):
    folder = tmp_path / "mapping"
    shutil.copytree(BUILTIN_ROOT / "splunk_hec", folder)
    template = folder / "event.json.j2"
    template.write_text(template.read_text().replace('{%- set asset = finding["asset"] -%}',
                                                     '{%- set asset = finding["raw"]["nope"] -%}'))
    app = fake_hec()
    data = siem_config(tmp_path, mapping=str(folder))
    data["routes"][0]["on"] = ["finding.created"]  # no raw event in the batch: every row fails
    async with harness(tmp_path, data, app) as h:
        await started(h)
        await h.send(findings(0, 150))
        await h.until(lambda: h.settled(150))
        assert batches(h) == 1 and h.states() == {"dead": 150} and app.state.requests == []


@pytest.mark.slow
async def test_a_killed_child_loses_nothing_and_comes_back(tmp_path, monkeypatch):
    monkeypatch.setattr(render_pool, "RESTART_AFTER", 0.2)
    app = fake_hec()
    async with harness(tmp_path, siem_config(tmp_path), app) as h:
        pool = await started(h)
        first = pool.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await h.send(findings(0, 500))
        await h.until(lambda: h.settled(501))
        assert h.states() == {"done": 501} and set(keys(app).values()) == {1}
        assert batches(h, "loop") >= 1  # the batch the dead child could not take was encoded in the loop
        assert await pool.start() and pool.pid not in (None, first)  # started again after RESTART_AFTER
        before = batches(h)
        await h.send(findings(500, 500))
        await h.until(lambda: h.settled(1_002))
        assert batches(h) > before and len(keys(app)) == 1_002 and set(keys(app).values()) == {1}


@pytest.mark.slow
async def test_small_batches_and_a_switched_off_pool_render_in_the_loop(tmp_path, monkeypatch):
    app = fake_hec()
    async with harness(tmp_path, siem_config(tmp_path), app) as h:
        pool = h.hub.dispatcher.render_pool
        assert pool is not None
        assert not pool.wants("splunk", render_pool.MIN_ROWS - 1) and pool.pid is None  # nothing started for it
        await h.send(findings(0, 20))
        await h.until(lambda: h.settled(21))
        assert batches(h) == 0 and batches(h, "loop") >= 1 and pool.pid is None
    off = siem_config(tmp_path / "off")
    (tmp_path / "off").mkdir()
    off["pipeline"]["render_process"] = False
    async with harness(tmp_path / "off", off, fake_hec()) as h:
        assert h.hub.dispatcher.render_pool is None
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    auto = siem_config(tmp_path / "auto")
    (tmp_path / "auto").mkdir()
    del auto["pipeline"]["render_process"]
    async with harness(tmp_path / "auto", auto, fake_hec()) as h:
        assert h.hub.dispatcher.render_pool is None  # one CPU: nothing to gain from a second process


@pytest.mark.slow
@pytest.mark.parametrize("kind", SIEM_TYPES)
def test_every_shipped_siem_target_travels_to_the_child(kind):
    """What the child gets is pickled: each example target must survive the trip and build its connector."""
    path = next(p for p in EXAMPLES if p.stem == kind)
    config = load_config(path, dummy_env(path.read_text()))
    for name, target in config.targets.items():
        spec = pickle.loads(pickle.dumps(Spec(target, config.mappings[name], config.resolve("."))))
        connector = connector_class(spec.config.type)(name, spec.config, spec.mapping, spec.base_dir)
        assert isinstance(connector, SupportsEncode)
        finding = {**Finding(source="scanner", title="t", severity="high", status="open", first_seen=SEEN,
                             last_seen=SEEN).model_dump(mode="json"), "id": "fnd_1", "fingerprint": "f" * 32}
        row = ClaimedDelivery(1, "r", name, "finding.created", "fnd_1", None, "key-1", 1, SEEN, SEEN,
                              orjson.dumps({"finding": finding}).decode())
        [encoded] = render_pool.encode_rows(connector, [(row, None)])
        assert isinstance(encoded, bytes), encoded


def test_only_connectors_that_read_items_through_encode_go_to_the_child():
    assert {t for t in ("splunk_hec", "sentinel", "elastic", "webhook", "linear", "notion", "file")
            if issubclass(connector_class(t), SupportsEncode)} == set(SIEM_TYPES)


class Lines(BatchConnector[TargetConfig]):
    name = "lines"

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        return [Verdict(Outcome.OK)] * len(items)


class EncodedLines(Lines):
    def encode(self, item: Item) -> bytes:
        return item.idempotency_key.encode()


def test_the_dispatcher_sends_to_the_child_only_targets_whose_connector_encodes():
    """A batch target goes to the child by what its connector is (``SupportsEncode``), not by its type name."""
    cfg = TargetConfig(type="lines")
    plain, encoded = Lines("plain", cfg, None), EncodedLines("encoded", cfg, None)
    assert dispatcher.render_pool_for({"plain": plain}, True, Path(".")) is None
    pool = dispatcher.render_pool_for({"plain": plain, "encoded": encoded}, True, Path("."))
    assert pool is not None and set(pool.specs) == {"encoded"}
    with pytest.raises(TypeError):
        render_pool.encode_rows(plain, [])



def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_the_render_process_does_not_outlive_a_killed_hub(tmp_path):
    """SIGKILL leaves no stray process: the child notices its parent is gone and exits."""
    app = fake_hec()
    with LoopbackServer(app) as sink:
        port = free_port()
        data = siem_config(tmp_path, url=sink.url)
        data["server"] = {"host": "127.0.0.1", "port": port}
        config = write_config(tmp_path / "hub.yaml", data)
        body = orjson.dumps({"findings": findings(0, 300)})
        headers = {"content-type": "application/json",
                   **signatures.build("standard-webhooks", [SW_SECRET]).sign(body, time.time(), "msg_1")}
        hub = HubProcess(config, port)
        with hub:
            assert hub.proc is not None
            assert httpx.post(f"{hub.url}/hooks/scanner", content=body, headers=headers).status_code == 202
            deadline = time.monotonic() + 30
            while not (kids := children(hub.proc.pid)) or len(app.state.events) < 301:
                assert time.monotonic() < deadline, f"{len(app.state.events)} events, children {kids}"
                time.sleep(0.05)
            hub.kill()
        deadline = time.monotonic() + 15
        while any(alive(k) for k in kids):
            assert time.monotonic() < deadline, f"still running after the hub was killed: {kids}"
            time.sleep(0.05)
