"""Replay protection: the same signed request again within its window is a duplicate, stored once.

The hub runs in-process on a clock the tests move (``hub.clock``), so windows expire without waiting.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from hub import retention, signatures
from hub.runtime import Hub
from hub.settings import load_config
from hub.store import replays
from tests.support import HMAC_SECRET, base_config, events_of, served_in_process, write_config

T0 = 1_800_000_000.0
SLACK = "slack-signing-secret"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path) -> dict[str, Any]:
    data = base_config(tmp_path)
    data["sources"].update({
        "sl": {"verify": {"scheme": "slack", "secrets": [SLACK]}},
        "gh": {"verify": {"scheme": "github", "secrets": [HMAC_SECRET]}},
        "win": {"verify": {"scheme": "hmac-sha256", "header": "X-Sig", "secrets": [HMAC_SECRET],
                           "replay_window_secs": 60}},
        "off": {"verify": {"scheme": "token", "header": "X-Token", "secrets": ["tok"], "replay_window_secs": 0}},
    })
    return data


@contextlib.asynccontextmanager
async def running(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    async with served_in_process(write_config(tmp_path / "hub.yaml", _config(tmp_path)), clock=clock,
                                 scheduler=False) as served:
        yield served


def signed(scheme: str, body: bytes, now: float, **options: Any) -> dict[str, str]:
    secret = {"slack": SLACK, "token": "tok"}.get(scheme, HMAC_SECRET)
    return {"content-type": "application/json", **signatures.build(scheme, [secret], **options).sign(body, now)}


def count(hub: Hub, source: str) -> int:
    return len(events_of(hub.store.conn, source=source))


async def test_a_slack_request_sent_twice_within_the_tolerance_is_a_duplicate(tmp_path):
    clock = Clock()
    async with running(tmp_path, clock) as (hub, client):
        body = b'{"text": "scan done"}'
        headers = signed("slack", body, T0)
        first = await client.post("/hooks/sl", content=body, headers=headers)
        clock.now += 299
        again = await client.post("/hooks/sl", content=body, headers=headers)
        assert first.status_code == 202
        assert again.status_code == 200 and again.json() == {"id": first.json()["id"], "status": "duplicate"}
        resent = await client.post("/hooks/sl", content=body, headers=signed("slack", body, clock.now))
        assert resent.status_code == 202  # the sender sending it again, newly signed, is a new event
        assert count(hub, "sl") == 2


async def test_an_hmac_body_without_key_is_a_duplicate_within_replay_window_and_new_after_it(tmp_path):
    clock = Clock()
    async with running(tmp_path, clock) as (hub, client):
        body = b'{"finding": "same report"}'
        headers = signed("hmac-sha256", body, T0, header="X-Sig")
        statuses = [(await client.post("/hooks/win", content=body, headers=headers)).status_code]
        clock.now += 59
        statuses.append((await client.post("/hooks/win", content=body, headers=headers)).status_code)
        clock.now += 2  # a scanner re-sending the same report later is accepted
        statuses.append((await client.post("/hooks/win", content=body, headers=headers)).status_code)
        assert statuses == [202, 200, 202]
        assert count(hub, "win") == 2
        # another source, same body: not a replay of this one
        other = await client.post("/hooks/se", content=body, headers=signed("hmac-sha256", body, T0,
                                                                            header="X-SE-Signature"))
        assert other.status_code == 202


async def test_github_replayed_under_a_new_delivery_id_is_a_duplicate(tmp_path):
    """X-GitHub-Delivery is not signed: an attacker can change it. The body digest still catches the replay."""
    clock = Clock()
    async with running(tmp_path, clock) as (hub, client):
        body = b'{"action": "created", "alert": {"number": 7}}'
        headers = signed("github", body, T0)
        assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 202
        forged = {**headers, "X-GitHub-Delivery": "an-unsigned-new-id"}
        assert (await client.post("/hooks/gh", content=body, headers=forged)).status_code == 200
        assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 200  # GitHub redelivery
        assert count(hub, "gh") == 1


async def test_replay_window_zero_turns_the_guard_off(tmp_path):
    async with running(tmp_path, Clock()) as (hub, client):
        body = b'{"n": 1}'
        for _ in range(2):
            assert (await client.post("/hooks/off", content=body, headers=signed("token", body, T0,
                                                                                 header="X-Token"))).status_code == 202
        assert count(hub, "off") == 2


async def test_the_guard_survives_a_restart_and_retention_prunes_expired_digests(tmp_path):
    clock = Clock()
    body = b'{"finding": "before the restart"}'
    headers = signed("hmac-sha256", body, T0, header="X-Sig")
    async with running(tmp_path, clock) as (_, client):
        assert (await client.post("/hooks/win", content=body, headers=headers)).status_code == 202
    clock.now += 30
    async with running(tmp_path, clock) as (hub, client):
        assert (await client.post("/hooks/win", content=body, headers=headers)).status_code == 200
        assert count(hub, "win") == 1
        await retention.prune(hub.store, hub.config.storage.retention, clock.now)
        assert replays.held(hub.store.conn) == 1  # not expired yet
        await retention.prune(hub.store, hub.config.storage.retention, T0 + 61)
        assert replays.held(hub.store.conn) == 0


def test_replay_window_is_refused_on_timestamped_schemes(tmp_path):
    import pytest

    from hub.errors import ConfigError

    data = base_config(tmp_path)
    data["sources"]["sl"] = {"verify": {"scheme": "slack", "secrets": [SLACK], "replay_window_secs": 60}}
    with pytest.raises(ConfigError, match="replay_window_secs: scheme slack signs a timestamp"):
        load_config(write_config(tmp_path / "hub.yaml", data))


async def test_a_replay_costs_no_second_event_even_in_one_commit_batch(tmp_path):
    """Two copies in flight together land in one group commit: the second still sees the first's digest."""
    import asyncio

    clock = Clock()
    async with running(tmp_path, clock) as (hub, client):
        body = orjson.dumps({"burst": True})
        headers = signed("hmac-sha256", body, T0, header="X-Sig")
        answers = await asyncio.gather(*(client.post("/hooks/win", content=body, headers=headers) for _ in range(5)))
        assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 202]
        assert count(hub, "win") == 1
