"""Targets that misbehave the ways issue 11 measured, as httpx transports in front of a webhook receiver that
counts what it accepted per ``webhook-id`` (the delivery's idempotency key): exactly once means a count of 1.

Used by the circuit-breaker tests and by ``bench/flaky.py``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import httpx


class Flaky(httpx.AsyncBaseTransport):
    """Answers 200 or 503 (or refuses the connection) as ``decide(request number of this message)`` says."""

    def __init__(self, decide: Callable[[int], int | None], clock: Callable[[], float] | None = None):
        self.decide, self.clock = decide, clock
        self.seen: Counter[str] = Counter()  # requests per message
        self.accepted: Counter[str] = Counter()  # 200s per message
        self.requests = 0
        self.ok_at: list[float] = []  # clock() of each 200, when a clock is given

    @property
    def first_ok(self) -> float | None:
        return self.ok_at[0] if self.ok_at else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        key = request.headers["webhook-id"]
        self.seen[key] += 1
        status = self.decide(self.seen[key])
        if status is None:
            raise httpx.ConnectError("connection refused (the fake target is down)", request=request)
        if status == 200:
            self.accepted[key] += 1
            if self.clock is not None:
                self.ok_at.append(self.clock())
        return httpx.Response(status, json={"ok": status == 200})


def fails_twice(clock: Callable[[], float] | None = None) -> Flaky:
    """Fails each message twice (503), then accepts it."""
    return Flaky(lambda n: 503 if n <= 2 else 200, clock)


def coin(seed: int = 11, clock: Callable[[], float] | None = None) -> Flaky:
    """503 at random half the time."""
    rng = random.Random(seed)
    return Flaky(lambda n: 503 if rng.random() < 0.5 else 200, clock)


def down_until(clock: Callable[[], float], back_at: float) -> Flaky:
    """Refuses connections until ``clock()`` reaches ``back_at``, then accepts everything."""
    return Flaky(lambda n: None if clock() < back_at else 200, clock)
