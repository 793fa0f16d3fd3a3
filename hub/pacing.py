"""How fast and how often a target is tried: retry backoff, token bucket, circuit breaker. Pure logic on a clock."""

from __future__ import annotations

import random
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


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``cooldown`` (one probe)
    -> closed on success, open again with a doubled cooldown (up to ``max_cooldown``) on failure."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float], max_cooldown: float = 600.0):
        self.threshold, self.base_cooldown, self.max_cooldown, self.clock = failures, cooldown, max_cooldown, clock
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() >= self.opened_at + self.cooldown else "open"

    def allowance(self) -> int | None:
        """How many attempts may start now: None = no limit, 0 = none (open, or probe under way), 1 = a probe."""
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
        return max(0.0, self.opened_at + self.cooldown - self.clock())

    def start_probe(self) -> None:
        if self.state == "half-open":
            self.probing = True

    def success(self) -> None:
        self.failures, self.opened_at, self.probing, self.cooldown = 0, None, False, self.base_cooldown

    def failure(self) -> bool:
        """Record a failure; True when this opened (or re-opened) the circuit."""
        self.failures += 1
        if self.probing or (self.opened_at is not None and self.state == "half-open"):
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self.opened_at, self.probing = self.clock(), False
            return True
        if self.opened_at is None and self.failures >= self.threshold:
            self.opened_at = self.clock()
            return True
        return False
