"""Whether a target may be tried now: its circuit breaker (``hub/pacing.py``), which rows its probes tried, and
a pause after a 429 with Retry-After. Fed every attempt's verdicts; says when the target is back."""

from __future__ import annotations

import logging
import time

from prometheus_client import Gauge

from hub.connector import Outcome, Verdict
from hub.pacing import CircuitBreaker

log = logging.getLogger("hub.delivery")
MAX_PAUSE = 3600.0


class TargetHealth:
    def __init__(self, target: str, breaker: CircuitBreaker, circuit: Gauge):
        self.target, self.breaker = target, breaker
        self.probed: list[int] = []  # seqs tried by the probes since the circuit last opened
        self.opened_at: float | None = None  # hub clock: when the circuit opened, until it closes
        self.paused_until = 0.0  # monotonic; a 429 with Retry-After pauses the whole target
        self._circuit = circuit.labels(target)

    def pause_left(self) -> float:
        return self.paused_until - time.monotonic()

    def probing(self, seq: int) -> None:
        """A probe starts on row ``seq``: the next probes of this outage try other rows first."""
        self.breaker.start_probe()
        self.probed.append(seq)

    def observe(self, verdicts: list[Verdict], now: float) -> float | None:
        """Count an attempt's verdicts. Returns when the circuit had opened, if this attempt closed it (the target
        is back: what the outage deferred can be made due now); else None."""
        breaker, back = self.breaker, None
        if any(v.outcome is Outcome.OK for v in verdicts):
            if breaker.success() and self.opened_at is not None:
                self.probed.clear()
                back, self.opened_at = self.opened_at, None
        elif any(v.outcome is Outcome.RETRY for v in verdicts) and breaker.failure():
            self.probed.clear()
            if breaker.trips == 1:  # closed -> open: once per outage at WARNING
                self.opened_at = now
                log.warning("target %s: circuit open: %d of %d attempts in the last %.0f s failed; deliveries wait "
                            "(their retries unused), probes in %.0f s", self.target, breaker.failures,
                            breaker.attempts, breaker.window, breaker.cooldown)
            else:
                log.info("target %s: circuit still open: %d probe(s) failed; next probes in %.0f s", self.target,
                         breaker.probes, breaker.cooldown)
        self._circuit.set(1 if breaker.state != "closed" else 0)
        waits = [v.retry_after for v in verdicts if v.retry_after and v.status == 429]
        if waits:
            self.paused_until = max(self.paused_until, time.monotonic() + min(max(waits), MAX_PAUSE))
        return back
