"""Backoff maths, the token bucket, the sliding window and the circuit breaker, on a fake clock."""

from __future__ import annotations

from typing import Any

from hub.pacing import CircuitBreaker, SlidingWindow, TokenBucket, retry_delay

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


def breaker(clock: Clock, **kw: Any) -> CircuitBreaker:
    opts: dict[str, Any] = {"window": 60, "min_requests": 10, "failure_rate": 0.8, "cooldown": 5, "max_cooldown": 30,
                            "probes": 3, **kw}
    return CircuitBreaker(clock=clock, **opts)


def test_sliding_window_waits_for_the_oldest_request_to_leave_it():
    clock = Clock()
    window = SlidingWindow(3, 60, clock)
    for step in (0, 10, 10):  # three requests at 1000, 1010 and 1020
        clock.t += step
        assert window.delay() == 0
        window.add()
    assert window.delay() == 40  # the 4th must wait until 1060, when the first leaves the window
    clock.t = 1059.9
    assert window.delay() > 0
    clock.t = 1060
    assert window.delay() == 0  # unlike a token bucket, no burst: one slot, freed by one old request
    window.add()
    assert window.delay() == 10  # the next slot frees at 1070
    clock.t = 500  # the clock stepped back: wait a whole window rather than trust old times
    assert window.delay() == 60


def test_breaker_opens_on_the_rate_only_past_the_minimum():
    clock = Clock()
    b = breaker(clock)
    assert [b.failure() for _ in range(9)] == [False] * 9  # 100% failed, but too few attempts to judge
    assert b.state == "closed" and b.allowance() is None
    assert b.failure() is True and b.state == "open" and b.allowance() == 0 and b.wait() == 5


def test_breaker_opens_at_the_rate_not_below_it():
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.success()
    assert [b.failure() for _ in range(11)] == [False] * 11  # 11 of 14 = 79%
    assert b.failure() is True  # 12 of 15 = 80%


def test_breaker_never_opens_while_recent_requests_succeed():
    clock = Clock()
    b = breaker(clock)
    for _ in range(200):  # a target that fails each message twice, then accepts: 2 of 3 attempts fail
        assert b.failure() is False and b.failure() is False
        b.success()
        clock.t += 0.1
    assert b.state == "closed"


def test_breaker_forgets_failures_older_than_the_window():
    clock = Clock()
    b = breaker(clock)
    for _ in range(9):
        b.failure()
    clock.t += 61
    assert b.failure() is False and b.attempts == 1  # the 9 earlier ones are out of the window


def test_breaker_probes_one_at_a_time_and_closes_on_the_first_success():
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.failure()
    clock.t += 5
    assert b.state == "half-open" and b.allowance() == 1
    b.start_probe()
    assert b.allowance() == 0  # one probe at a time
    assert b.failure() is False and b.allowance() == 1  # the next probe may go at once
    b.start_probe()
    assert b.success() is True
    assert b.state == "closed" and b.allowance() is None and b.cooldown == 5 and b.trips == 0
    assert b.failure() is False and b.attempts == 2  # a fresh window: the old failures cannot reopen it


def test_breaker_backoff_doubles_up_to_the_cap_for_a_dead_target():
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.failure()
    waits, sent = [], 0
    for _ in range(8):
        waits.append(b.wait())
        clock.t += b.wait()
        for i in range(3):
            assert b.allowance() == 1
            b.start_probe()
            sent += 1
            assert b.failure() is (i == 2)
    assert waits == [5, 10, 20, 30, 30, 30, 30, 30]
    assert b.state == "open" and b.trips == 9 and sent == 24  # 3 requests per cooldown at most: no storm


def test_breaker_closes_on_a_success_while_open():
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.failure()
    assert b.failure() is False  # a straggler that started before it opened
    assert b.success() is True and b.state == "closed"  # the target answered: it is not held


def test_breaker_clock_stepping_back_does_not_lengthen_the_wait():
    clock = Clock()
    b = breaker(clock)
    for _ in range(10):
        b.failure()
    clock.t -= 3600
    assert b.wait() == 5
