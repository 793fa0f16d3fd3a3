from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.app import create_app
from hub.runtime import Hub
from hub.settings import load_config
from tests import pg
from tests.pg import ALL_ON_PG, fresh_schema
from tests.support import base_config, write_config

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client without a fake transport fails loudly; only loopback (our own subprocesses) is allowed."""
    real_async = httpx.AsyncHTTPTransport.handle_async_request
    real_sync = httpx.HTTPTransport.handle_request

    async def guarded_async(self: Any, request: httpx.Request) -> httpx.Response:
        if request.url.host not in LOOPBACK:
            raise AssertionError(f"test tried the real network: {request.method} {request.url}")
        return await real_async(self, request)

    def guarded_sync(self: Any, request: httpx.Request) -> httpx.Response:
        if request.url.host not in LOOPBACK:
            raise AssertionError(f"test tried the real network: {request.method} {request.url}")
        return real_sync(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", guarded_async)
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", guarded_sync)


@pytest.fixture
def config_data(tmp_path: Path) -> dict[str, Any]:
    return base_config(tmp_path)


@pytest.fixture(autouse=True)
def store_engine(request: pytest.FixtureRequest) -> Iterator[None]:
    """With HUB_TEST_STORE=postgres, each test's hubs (tests.support.base_config) use a fresh PostgreSQL schema,
    except tests marked sqlite_only."""
    if not ALL_ON_PG or request.node.get_closest_marker("sqlite_only"):
        yield
        return
    with fresh_schema() as url:
        pg.current[:] = [url]
        try:
            yield
        finally:
            pg.current.clear()


@pytest.fixture
def config_file(tmp_path: Path, config_data: dict[str, Any]) -> Path:
    return write_config(tmp_path / "hub.yaml", config_data)


@pytest.fixture
async def hub(config_file: Path) -> AsyncIterator[Hub]:
    instance = Hub(load_config(config_file))
    await instance.start()
    try:
        yield instance
    finally:
        await instance.aclose()


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(hub), client=("203.0.113.7", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        yield c


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzzers' totals (requests sent, answered 5xx), shown whatever the capture mode so CI's log has them."""
    for name in ("tests.test_fuzz_hooks", "tests.test_fuzz_api"):
        module = sys.modules.get(name)
        if module is not None and module.SENT["requests"]:
            totals = ", ".join(f"{key} {value}" for key, value in module.SENT.items())
            terminalreporter.write_line(f"{name.removeprefix('tests.')}: {totals}")
