"""A budget for requests that fail authentication, per client address.

Every ``/api/v1`` call is audited, and before this a request with a missing, unknown or wrong token wrote
an audit row too: anyone who could reach the port could grow the audit table as fast as they could send.
Failed authentications now spend a token bucket of their address (hub/pacing.py). Within the budget they
are answered 401 and audited as before (an operator still sees someone guessing); past it they are answered
429 with Retry-After, not audited, and counted in ``hub_api_anonymous_limited_total``. A request with a
valid token never touches the budget, so a client behind the same address as a flood keeps working.

Addresses are kept in insertion order up to ``MAX_ADDRESSES``; the oldest is forgotten first, so spraying
source addresses costs memory that stays bounded (a forgotten address starts again with a full budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hub.pacing import TokenBucket

PER_MINUTE = 30  # failed authentications answered 401 (and audited) per address per minute, after the burst
BURST = 10
MAX_ADDRESSES = 10_000


class AnonymousLimiter:
    def __init__(self, clock: Callable[[], float], per_minute: int | None = None, burst: int | None = None,
                 max_addresses: int = MAX_ADDRESSES):
        """Without arguments, the module's PER_MINUTE and BURST as they are now (a test may raise them)."""
        self.clock, self.max_addresses = clock, max_addresses
        self.rate, self.burst = (per_minute or PER_MINUTE) / 60.0, burst or BURST
        self.buckets: dict[str, TokenBucket] = {}

    def spend(self, address: str) -> float:
        """Spend one failed authentication of ``address``: 0.0 when within its budget, else the seconds to wait
        (nothing spent)."""
        bucket = self.buckets.pop(address, None)  # re-inserted below: most recently seen last
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.clock)
            while len(self.buckets) >= self.max_addresses:
                del self.buckets[next(iter(self.buckets))]
        self.buckets[address] = bucket
        return bucket.delay()

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
