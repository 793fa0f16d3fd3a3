"""Target configuration: the blocks every target has (like every Vector sink) and ``TargetConfig``, which each
connector's own Config subclasses with its vendor fields. Models only: the config loader validates them, the
connector reads its own through ``Connector.config``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from hub.strict import Loc, StrictModel


class RetryConfig(StrictModel):
    schedule_secs: list[float] = Field([5, 30, 120, 600, 1800, 7200, 18000, 36000, 36000], min_length=0,
                                       description="Delays before each retry; after the last one the delivery is dead.")
    jitter: float = Field(0.2, ge=0, le=1, description="Random spread of each delay, as a fraction (0.2 = +-20%).")


class RateLimitConfig(StrictModel):
    per_sec: float = Field(gt=0, description="Requests per second to this target (token bucket).")
    burst: int | None = Field(None, ge=1, description="Bucket size; default: one second's worth.")


class RequestConfig(StrictModel):
    timeout_secs: float = Field(10.0, gt=0, le=300, description="Timeout of one request.")
    verify_tls: bool = Field(True, description="Check the target's TLS certificate.")
    ca_file: str | None = Field(None, description="PEM file of CAs to trust instead of the system's.")


class BreakerConfig(StrictModel):
    """When a target is left alone: on a failure *rate* over a window, never on a few unlucky failures."""

    window_secs: float = Field(60.0, gt=0, le=3600, description="How far back attempts count toward the failure rate.")
    min_requests: int = Field(10, ge=1, description="Attempts in the window before the circuit may open.")
    failure_rate: float = Field(0.8, gt=0, le=1, description="Share of failed attempts in the window that opens it.")
    cooldown_secs: float = Field(5.0, gt=0, description="How long it stays open before the first probes.")
    max_cooldown_secs: float = Field(30.0, gt=0, description="The cooldown doubles each time the probes fail, up to "
                                                             "this: a dead target gets a few requests this often.")
    probes: int = Field(3, ge=1, le=100, description="Attempts, one at a time, after a cooldown: the first success "
                                                     "closes the circuit, this many failures open it again.")
    failures: int | None = Field(None, ge=1, description="Deprecated (the old consecutive-failures breaker): the "
                                                         "same as min_requests: N with failure_rate: 1.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.failures is not None and self.model_fields_set & {"min_requests", "failure_rate"}:
            yield ("failures",), "replaced by min_requests and failure_rate: give those alone"
        if "max_cooldown_secs" in self.model_fields_set and self.max_cooldown_secs < self.cooldown_secs:
            yield ("max_cooldown_secs",), "must be at least cooldown_secs"

    def opening(self) -> tuple[int, float]:
        """(min_requests, failure_rate) in force: ``failures: N`` (the old key) means N attempts, all failed."""
        return (self.failures, 1.0) if self.failures is not None else (self.min_requests, self.failure_rate)


class BatchConfig(StrictModel):
    max_events: int = Field(500, ge=1, le=100_000, description="Items per request at most.")
    max_bytes: int = Field(1_000_000, ge=1024, description="Request body size at most (before compression).")
    timeout_secs: float = Field(1.0, ge=0, description="How long a partial batch waits for more items.")
    in_flight: int = Field(2, ge=1, le=64, description="Batches sent concurrently to this target.")
    compression: bool = Field(True, description="gzip request bodies.")


class SyncConfig(StrictModel):
    interval_secs: int = Field(300, ge=10, description="How often ticket status is read back.")
    dismiss_states: list[str] = Field(default_factory=list, description="Ticket states (the vendor's names, any "
                                      "case) in which a person closed it as not to be fixed, e.g. [\"Won't Fix\", "
                                      "\"Canceled\"]: the finding is dismissed, not resolved.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        seen: set[str] = set()
        for i, state in enumerate(self.dismiss_states):
            if not state.strip():
                yield ("dismiss_states", i), "an empty state name matches no ticket"
            elif state.strip().casefold() in seen:
                yield ("dismiss_states", i), f"{state!r} is listed twice (names are compared without case)"
            seen.add(state.strip().casefold())


class TargetConfig(StrictModel):
    """Fields every target has; a connector's Config subclass adds its vendor fields."""

    type: str = Field(description="Connector type: names the module, mapping folder and docs page.")
    url: str | None = Field(None, description="API base URL; defaults to the vendor's public URL where there is one.")
    mapping: str | None = Field(None, description="A mapping folder of your own instead of the built-in one.")
    concurrency: int = Field(4, ge=1, le=256, description="Deliveries in flight to this target at once.")
    rate_limit: RateLimitConfig | None = Field(None, description="Token bucket; default: the connector's.")
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retry schedule.")
    request: RequestConfig = Field(default_factory=RequestConfig, description="HTTP request settings.")
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig,
                                           description="When to stop trying for a while.")

    @model_validator(mode="before")
    @classmethod
    def _blocks_keep_type_defaults(cls, data: Any) -> Any:
        """``batch: {in_flight: 8}`` keeps the connector's own batch defaults (HEC 1000 events, bulk 5 MB), not the
        block model's generic ones: a block given in part is laid over the field's default, key by key."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for key, info in cls.model_fields.items():
            given = data.get(key)
            if isinstance(given, dict) and isinstance(info.default, BaseModel):
                merged[key] = {**info.default.model_dump(exclude_defaults=True), **given}
        return merged

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.url is not None and (why := url_problem(self.url)):
            yield ("url",), why

    def public(self) -> dict[str, Any]:
        """The config as templates see it: secrets removed (a connector builds it once, see Connector._target)."""
        return _strip_secrets(self)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a target's base URL, or None. Catches what a variable typo makes of it."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"not a URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return "must start with https:// (http:// only for a local test double or proxy)"
    if not parsed.host:
        return "has no host name"
    if "://" in url.split("://", 1)[1]:
        return "holds a second scheme (https://https://...): the variable it is built from probably has one too"
    return None


def _strip_secrets(model: StrictModel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            continue
        if isinstance(value, StrictModel):
            out[name] = _strip_secrets(value)
        elif isinstance(value, list) and any(isinstance(v, SecretStr) for v in value):
            continue
        else:
            out[name] = value
    return out


