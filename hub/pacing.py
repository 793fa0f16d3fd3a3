"""How fast and how often a target is tried: retry backoff, token bucket, sliding window, circuit breaker. Pure logic
on a clock."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence

MAX_RETRY_AFTER = 86_400.0


def retry_delay(attempt: int, schedule: Sequence[float], jitter: float, retry_after: float | None = None,
                rand: Callable[[], float] = random.random) -> float | None:
    """Seconds until the next try after ``attempt`` attempts failed, or None when the schedule is used up.

    ``Retry-After`` from the target wins over the schedule (clamped to [1 s, 1 day]); the schedule
    gets +-``jitter`` spread so retries of many deliveries do not arrive together.
    """
    if attempt > len(schedule):
        return None
    if retry_after is not None:
        return min(max(retry_after, 1.0), MAX_RETRY_AFTER)
    base = schedule[attempt - 1]
    return max(0.0, base * (1 + jitter * (2 * rand() - 1)))


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``delay()`` says how long to wait for one."""

    def __init__(self, rate: float, burst: int | None, clock: Callable[[], float]):
        self.rate, self.capacity, self.clock = rate, float(burst or max(1, round(rate))), clock
        self.tokens, self.updated = self.capacity, clock()

    def delay(self) -> float:
        """Take a token if one is there (0.0), else return the wait until the next one (token not taken)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class SlidingWindow:
    """At most ``limit`` requests in any ``window`` seconds: a platform's sliding-window limit, kept on our side.

    A token bucket refills gradually and so may send a burst the platform's window still counts; this one waits
    until the oldest request of the last ``limit`` has left the window. The poller records a request when its
    answer has arrived (``add``), later than the platform can have counted it, so a request sent once
    ``delay()`` is 0 never lands within ``window`` of the request ``limit`` places before it.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float]):
        self.limit, self.window, self.clock = limit, window, clock
        self.times: deque[float] = deque()

    def delay(self) -> float:
        """Seconds to wait before the next request may be sent (0.0: now)."""
        now = self.clock()
        if self.times and self.times[-1] > now:  # the clock stepped back: the stored times mean nothing now
            self.times = deque([now] * len(self.times))
        while self.times and self.times[0] + self.window <= now:
            self.times.popleft()
        return 0.0 if len(self.times) < self.limit else self.times[0] + self.window - now

    def add(self) -> None:
        """Record a request (call once its answer, or its failure, is in)."""
        self.times.append(self.clock())
        while len(self.times) > self.limit:
            self.times.popleft()


class CircuitBreaker:
    """Whether a target may be tried now, judged on the share of failed attempts in a sliding window.

    closed -> open when, over the last ``window`` seconds, at least ``min_requests`` attempts were made and at
    least ``failure_rate`` of them failed. A single failure never opens it, and neither does a failure rate on
    too few attempts to mean anything. open -> half-open after ``cooldown``: up to ``probes`` attempts, one at
    a time. The first success closes it; ``probes`` failures in a row open it again for twice as long, up to
    ``max_cooldown`` (a dead target gets a few requests per ``max_cooldown``, never a storm).

    A success seen while open or half-open (a request that started before it opened, or a probe) closes it at
    once: a target whose requests succeed is never held. Closing starts a fresh window, so the failures that
    opened it cannot open it again by themselves.

    The clock is the hub's: if it steps backwards while open, the wait restarts rather than growing.
    """

    def __init__(self, *, window: float, min_requests: int, failure_rate: float, cooldown: float,
                 max_cooldown: float, probes: int, clock: Callable[[], float]):
        self.window, self.min_requests, self.failure_rate = window, min_requests, failure_rate
        self.base_cooldown, self.max_cooldown, self.probes, self.clock = cooldown, max(cooldown, max_cooldown), \
            probes, clock
        self.cooldown = cooldown
        self.opened_at: float | None = None
        self.probing = False
        self.failed_probes = 0
        self.trips = 0  # times opened since it was last closed
        self._seconds: deque[list[int]] = deque()  # [second, attempts, failures], oldest first
        self.attempts = self.failures = 0  # totals over the window

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._since_open() >= self.cooldown else "open"

    def allowance(self) -> int | None:
        """How many attempts may start now: None = no limit, 0 = none (open, or a probe under way), 1 = a probe."""
        state = self.state
        if state == "closed":
            return None
        if state == "open" or self.probing:
            return 0
        return 1

    def wait(self) -> float:
        """Seconds until the next probe may start (0 when not open)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - self._since_open())

    def start_probe(self) -> None:
        if self.state == "half-open":
            self.probing = True

    def success(self) -> bool:
        """Record a successful attempt; True when this closed the circuit."""
        closing = self.opened_at is not None
        if closing:
            self.opened_at, self.probing, self.failed_probes, self.trips = None, False, 0, 0
            self.cooldown = self.base_cooldown
            self._seconds.clear()
            self.attempts = self.failures = 0
        self._count(ok=True)
        return closing

    def failure(self) -> bool:
        """Record a failed attempt; True when this opened the circuit (or opened it again after failed probes)."""
        if self.opened_at is not None:
            if not self.probing:
                return False  # an attempt that started before it opened: already counted in the decision
            self.probing = False
            self.failed_probes += 1
            if self.failed_probes < self.probes:
                return False
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            return self._open()
        self._count(ok=False)
        if self.attempts >= self.min_requests and self.failures >= self.failure_rate * self.attempts - 1e-9:
            return self._open()
        return False

    def _open(self) -> bool:
        self.opened_at, self.failed_probes = self.clock(), 0
        self.trips += 1
        return True

    def _since_open(self) -> float:
        assert self.opened_at is not None
        elapsed = self.clock() - self.opened_at
        if elapsed < 0:  # the clock stepped back: count from now
            self.opened_at, elapsed = self.clock(), 0.0
        return elapsed

    def _count(self, ok: bool) -> None:
        """Add one attempt to the window (one bucket per second, so memory stays bounded by ``window``)."""
        now = self.clock()
        second = int(now)
        if self._seconds and self._seconds[-1][0] > second:  # the clock stepped back: start over
            self._seconds.clear()
            self.attempts = self.failures = 0
        horizon = now - self.window
        while self._seconds and self._seconds[0][0] + 1 <= horizon:
            _, n, bad = self._seconds.popleft()
            self.attempts -= n
            self.failures -= bad
        if self._seconds and self._seconds[-1][0] == second:
            bucket = self._seconds[-1]
        else:
            bucket = [second, 0, 0]
            self._seconds.append(bucket)
        bucket[1] += 1
        self.attempts += 1
        if not ok:
            bucket[2] += 1
            self.failures += 1
