"""A SIGKILL while deliveries are in flight: after a restart every delivery completes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub import signatures
from hub.store import deliveries as outbox
from tests.support import (
    SW_SECRET,
    HubProcess,
    LoopbackServer,
    base_config,
    free_port,
    scanner_source,
    store_at,
    write_config,
)

N = 40
OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="


def slow_receiver() -> Starlette:
    scheme = signatures.build("standard-webhooks", [OUT_SECRET])
    seen: dict[str, int] = {}
    started: list[str] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        scheme.verify({k.lower(): v for k, v in request.headers.items()}, body, time.time())
        started.append(request.headers["webhook-id"])
        await asyncio.sleep(0.3)  # long enough to kill the hub mid-request
        doc = orjson.loads(body)
        key = f"{doc['finding']['tool_id']}:{doc['type']}"
        seen[key] = seen.get(key, 0) + 1
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.seen, app.state.started = seen, started
    return app


@pytest.mark.slow
def test_sigkill_during_delivery_then_restart_completes_everything(tmp_path: Path):
    app = slow_receiver()
    with LoopbackServer(app) as sink:
        port = free_port()
        config = write_config(tmp_path / "hub.yaml", {
            "server": {"host": "127.0.0.1", "port": port},
            "storage": base_config(tmp_path)["storage"],  # SQLite, or PostgreSQL under HUB_TEST_STORE=postgres
            "sources": {"scanner": scanner_source({"title": "item.title", "tool_id": "item.id"})},
            "routes": [{"name": "all", "on": ["finding.created"], "to": ["hook"]}],
            "targets": {"hook": {"type": "webhook", "url": f"{sink.url}/hook", "secret": OUT_SECRET,
                                 "concurrency": 4, "retry": {"schedule_secs": [0.1, 0.2, 0.5, 1], "jitter": 0}}},
            # PostgreSQL: a restarted process does not reset rows in flight (they may be a live peer's); they come
            # back when their lease passes
            "pipeline": {"safety_net_secs": 0.5, "claim_lease_secs": 2},
        })
        body = orjson.dumps({"findings": [{"id": f"F-{i}", "title": f"finding {i}"} for i in range(N)]})
        headers = {"content-type": "application/json",
                   **signatures.build("standard-webhooks", [SW_SECRET]).sign(body, time.time(), "msg_crash")}
        hub = HubProcess(config, port)
        with hub:
            assert httpx.post(f"{hub.url}/hooks/scanner", content=body, headers=headers).status_code == 202
            deadline = time.monotonic() + 20
            while len(app.state.started) < 6:  # several deliveries are in flight right now
                assert time.monotonic() < deadline, "deliveries never started"
                time.sleep(0.01)
            hub.kill()
        with store_at(tmp_path / "hub.db") as conn:
            states = outbox.counts(conn)
        assert states.get("in_flight", 0) > 0 and states.get("done", 0) < N  # killed mid-way
        with HubProcess(config, port):
            deadline = time.monotonic() + 30
            while True:
                with store_at(tmp_path / "hub.db") as conn:
                    states = outbox.counts(conn)
                if states == {"done": N}:
                    break
                assert time.monotonic() < deadline, f"not all delivered: {states}"
                time.sleep(0.1)
    assert set(app.state.seen) == {f"F-{i}:finding.created" for i in range(N)}  # every one arrived (at least once)
