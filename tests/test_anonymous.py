"""Requests without a valid token: a budget per client address, after which they are 429 and not audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from hub.api.anonymous import BURST, PER_MINUTE, AnonymousLimiter
from hub.app import create_app
from hub.cli import main
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import tokens as token_rows
from tests.support import EVERY, base_config, write_config

NOW = [1_800_000_000.0]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[tuple[Hub, Path]]:
    config = write_config(tmp_path / "hub.yaml", base_config(tmp_path, api={"rate_limit_per_min": 1000}))
    NOW[0] = 1_800_000_000.0
    h = Hub(load_config(config), clock=lambda: NOW[0])
    await h.start()
    try:
        yield h, config
    finally:
        await h.aclose()


def client(h: Hub, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(h), client=(address, 4000)),
                             base_url="http://hub.test")


def audit_rows(h: Hub) -> int:
    return len(token_rows.audit_listing(h.store.conn, limit=EVERY, actor="anonymous"))


async def test_failed_authentications_past_the_address_budget_are_429_not_audited_and_counted(hub):
    h, config = hub
    token = CliRunner().invoke(main, ["tokens", "create", "--config", str(config), "--name", "ci", "--scope",
                                      "read"]).output.strip().splitlines()[0]
    bad = {"authorization": "Bearer fh_0123456789_guess"}
    async with client(h, "203.0.113.7") as flood, client(h, "198.51.100.9") as other:
        answers = [await flood.get("/api/v1/findings", headers=bad if i % 2 else {}) for i in range(BURST + 25)]
        assert [a.status_code for a in answers[:BURST]] == [401] * BURST
        assert {a.status_code for a in answers[BURST:]} == {429}
        limited = answers[BURST].json()
        assert limited == {"ok": False, "code": "rate_limited", "error": limited["error"], "status": 429,
                           "errors": [{"code": "rate_limited", "message": limited["error"]}]}
        assert answers[BURST].headers["retry-after"] == str(60 // PER_MINUTE)
        assert audit_rows(h) == BURST  # the 25 past the budget wrote nothing
        assert "hub_api_anonymous_limited_total 25.0" in (await flood.get("/metrics")).text
        # a valid token from the flooding address still works, and another address has its own budget
        assert (await flood.get("/api/v1/findings", headers={"authorization": f"Bearer {token}"})).status_code == 200
        assert (await other.get("/api/v1/findings", headers=bad)).status_code == 401
        NOW[0] += 60 / PER_MINUTE  # one more failure is allowed once the bucket refilled one token
        assert (await flood.get("/api/v1/findings", headers=bad)).status_code == 401
        assert (await flood.get("/api/v1/findings", headers=bad)).status_code == 429
        assert audit_rows(h) == BURST + 2


def test_addresses_are_bounded_and_the_oldest_is_forgotten_first():
    now = [0.0]
    limiter = AnonymousLimiter(lambda: now[0], per_minute=60, burst=1, max_addresses=3)
    assert [limiter.spend(a) for a in ("a", "b", "c")] == [0.0, 0.0, 0.0]
    assert limiter.spend("a") == pytest.approx(1.0)  # a is now the most recently seen
    assert limiter.spend("d") == 0.0 and list(limiter.buckets) == ["c", "a", "d"]  # b (the oldest) went
    assert len(limiter.buckets) == 3
