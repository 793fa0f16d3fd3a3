"""Backoff maths, the token bucket and the circuit breaker, on a fake clock."""

from __future__ import annotations

from hub.pacing import CircuitBreaker, TokenBucket, retry_delay

SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_schedule_then_dead():
    assert [retry_delay(n, SCHEDULE, 0) for n in range(1, 8)] == SCHEDULE
    assert retry_delay(8, SCHEDULE, 0) is None
    assert retry_delay(1, [], 0) is None


def test_jitter_bounds():
    assert retry_delay(2, SCHEDULE, 0.2, rand=lambda: 0.0) == 240
    assert retry_delay(2, SCHEDULE, 0.2, rand=lambda: 1.0) == 360
    assert retry_delay(2, SCHEDULE, 0.2, rand=lambda: 0.5) == 300


def test_retry_after_wins_and_is_clamped():
    assert retry_delay(1, SCHEDULE, 0.2, retry_after=42) == 42
    assert retry_delay(1, SCHEDULE, 0, retry_after=0) == 1.0
    assert retry_delay(1, SCHEDULE, 0, retry_after=10**9) == 86400
    assert retry_delay(8, SCHEDULE, 0, retry_after=5) is None  # the schedule still ends


def test_token_bucket():
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=2, clock=clock)
    assert [bucket.delay() for _ in range(2)] == [0.0, 0.0]
    assert bucket.delay() == 0.5
    clock.t += 0.5
    assert bucket.delay() == 0.0
    clock.t += 100
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.5]  # never more than the burst


def test_breaker_opens_probes_and_closes():
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    assert b.allowance() is None
    assert [b.failure() for _ in range(3)] == [False, False, True]
    assert b.state == "open" and b.allowance() == 0 and b.wait() == 30
    clock.t += 30
    assert b.state == "half-open" and b.allowance() == 1
    b.start_probe()
    assert b.allowance() == 0  # one probe at a time
    assert b.failure() is True and b.cooldown == 60 and b.state == "open"
    clock.t += 60
    b.start_probe()
    b.success()
    assert b.state == "closed" and b.allowance() is None and b.cooldown == 30


def test_breaker_success_resets_the_count():
    b = CircuitBreaker(failures=2, cooldown=1, clock=Clock())
    b.failure()
    b.success()
    assert b.failure() is False and b.state == "closed"
