"""A 202 means on disk: SIGKILL right after the last acknowledgement loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx
import pytest

from hub.store import events as event_rows
from tests.support import HMAC_SECRET, HubProcess, base_config, events_of, free_port, store_at, write_config

N = 300


async def _send_all(url: str) -> list[str]:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=20) as client:
        async def one(i: int) -> str:
            body = json.dumps({"event": "finding.created", "data": {"finding_id": f"fnd_{i}"}}).encode()
            sig = hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
            r = await client.post(url, content=body, headers={"content-type": "application/json",
                                                               "x-se-signature": sig})
            assert r.status_code == 202, r.text
            return r.json()["id"]

        return await asyncio.gather(*(one(i) for i in range(N)))


@pytest.mark.slow
def test_sigkill_after_the_last_202_loses_nothing(tmp_path):
    port = free_port()
    config = write_config(tmp_path / "hub.yaml", base_config(tmp_path, server={"host": "127.0.0.1", "port": port}))
    hub = HubProcess(config, port)
    with hub:
        acked = asyncio.run(_send_all(f"{hub.url}/hooks/se"))
        hub.kill()  # SIGKILL: no shutdown handler runs
    assert len(set(acked)) == N
    with HubProcess(config, port) as again:
        assert httpx.get(again.url + "/readyz").status_code == 200
        with store_at(tmp_path / "hub.db") as conn:
            stored = {e["id"] for e in events_of(conn)}
            bodies = {json.loads(e.body)["data"]["finding_id"] for e in event_rows.by_ids(conn, list(stored)).values()}
    assert set(acked) <= stored
    assert bodies == {f"fnd_{i}" for i in range(N)}
