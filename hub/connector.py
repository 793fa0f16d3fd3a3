"""The connector contract: what a target type implements and what the dispatcher relies on.

A connector renders an ``Item`` (one delivery) through its mapping into exact requests, sends them
and classifies the answer into a ``Verdict``: OK, RETRY or PERMANENT. Transport errors never reach
``classify``; the dispatcher turns them into RETRY. Optional capabilities are Protocols checked with
``isinstance``: ``SupportsBatch`` (many items per request, one verdict per item) and
``SupportsStatus`` (read ticket state back for sync). A third-party connector needs only this module.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from hub.ids import parse_uint
from hub.strict import Loc, StrictModel

if TYPE_CHECKING:
    from hub.mappings import Mapping

USER_AGENT = "findings-hub/0.1 (+https://github.com/findings-hub)"


class Outcome(enum.Enum):
    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""  # shown by `hub deliveries`; never contains secrets
    remote_id: str | None = None  # ticket or issue id when the target creates one
    retry_after: float | None = None  # seconds, from Retry-After when the target sends it
    status: int | None = None  # HTTP status, when there was an answer
    remote_url: str | None = None
    remote_status: str | None = None


@dataclass(frozen=True)
class Ref:
    """The link between a finding and its ticket at one target (``external_refs``)."""

    finding_id: str
    target: str
    remote_id: str | None = None
    url: str | None = None
    remote_status: str | None = None
    state: str = "creating"  # creating: written before the create call; linked: the remote id is known


@dataclass(slots=True)
class Item:
    """One delivery as a connector sees it; read it, never change it. (Not ``frozen``: a frozen dataclass's
    ``__init__`` costs 3.3 µs for a dozen fields against 0.4 µs, paid for every SIEM event, twice.)"""

    id: str
    kind: str  # finding.created | finding.updated | ... | event.received
    idempotency_key: str
    route: str
    target: str
    finding: dict[str, Any] | None = None  # the Finding (JSON form) as it was at this lifecycle step
    event: dict[str, Any] | None = None  # event.received: id, source, received_at, verified_by, body
    changes: dict[str, Any] = field(default_factory=dict)  # finding.updated: {field: {"old": .., "new": ..}}
    ref: Ref | None = None
    attempt: int = 1
    dead: dict[str, Any] | None = None  # delivery.dead: the delivery that gave up (id, target, kind, reason)
    encoded: bytes | None = None  # encode()'s result, made by the render process (finding and event are then None)

    @property
    def linked_id(self) -> str | None:
        """The ticket's id at this target once its create went through (ref state ``linked``), else None."""
        ref = self.ref
        return ref.remote_id if ref is not None and ref.state == "linked" and ref.remote_id else None


@dataclass
class Outbound:
    """An exact request. ``hub render`` prints these with ``secret_headers`` masked."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    secret_headers: frozenset[str] = frozenset()
    meta: dict[str, Any] = field(default_factory=dict)  # connector-private (which operation, ...)

    def masked_headers(self) -> dict[str, str]:
        secret = {h.lower() for h in self.secret_headers}
        return {k: ("********" if k.lower() in secret else v) for k, v in self.headers.items()}


# --- target configuration: the blocks every target has (like every Vector sink) ----------------------------


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
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="When to stop trying for a while.")

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


# --- the contract -----------------------------------------------------------------------------------------


class Connector:
    """Base of every connector. Subclasses set ``name``, ``Config`` and implement ``deliver``."""

    name: ClassVar[str]
    Config: ClassVar[type[TargetConfig]] = TargetConfig
    default_url: ClassVar[str | None] = None
    payloads: ClassVar[tuple[str, ...]] = ()  # payload names its mapping must provide
    work_items: ClassVar[bool] = False  # one remote object per finding, linked through external_refs
    default_rate_limit: ClassVar[float | None] = None  # requests/s when the config sets none

    # deliver_batch reads an item only through encode() (or item.encoded, set when the dispatcher's render
    # process encoded it already): the dispatcher may then render this target's big batches on another core.
    encodes_apart: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str] | None] = None  # event types it can deliver (None: all)

    def __init__(self, target: str, config: TargetConfig, mapping: Mapping, base_dir: Path | None = None):
        self.target, self.config, self.mapping = target, config, mapping
        self.base_dir = base_dir or Path(".")

    @property
    def base_url(self) -> str:
        return (self.config.url or self.default_url or "").rstrip("/")

    def client(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """One client per delivery slot: httpx checks every pooled connection on each request, so many
        small pools are much cheaper than one big one (docs/measurements.md, "Outbound")."""
        return httpx.AsyncClient(transport=transport, timeout=self.config.request.timeout_secs, verify=self.tls,
                                 headers={"user-agent": USER_AGENT}, follow_redirects=False,
                                 limits=httpx.Limits(max_connections=2, max_keepalive_connections=1))

    @cached_property
    def tls(self) -> ssl.SSLContext | bool:
        """``request.verify_tls: false`` turns checking off (a CA file then does not turn it back on);
        ``request.ca_file`` is read relative to the config file's folder, once for every client."""
        req = self.config.request
        if not req.verify_tls:
            return False
        if req.ca_file:
            return ssl.create_default_context(cafile=str(self.base_dir / req.ca_file))
        return True

    @cached_property
    def _target(self) -> dict[str, Any]:
        return {"name": self.target, **self.config.public()}  # the config is frozen: built once, not per item

    def context(self, item: Item) -> dict[str, Any]:
        """What templates see."""
        return {"kind": item.kind, "finding": item.finding, "event": item.event, "changes": item.changes,
                "ref": item.ref, "dead": item.dead, "delivery": {"id": item.id, "idempotency_key": item.idempotency_key,
                                                                 "route": item.route, "attempt": item.attempt},
                "target": self._target, "vars": self.mapping.vars}

    def render(self, item: Item) -> list[Outbound]:
        raise NotImplementedError

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the connector holds (files, caches); called at shutdown."""


class HttpConnector(Connector):
    """Render -> send each request -> classify; the first answer that is not OK decides."""

    async def send(self, client: httpx.AsyncClient, out: Outbound) -> httpx.Response:
        return await client.request(out.method, out.url, headers=out.headers, content=out.body)

    def classify(self, response: httpx.Response) -> Verdict:
        return classify_status(response)

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        verdict = Verdict(Outcome.OK, "nothing to send")
        for out in self.render(item):
            verdict = self.classify(await self.send(client, out))
            if verdict.outcome is not Outcome.OK:
                return verdict
        return verdict


class BatchConnector(Connector):
    """Many items per request, one verdict per item (``SupportsBatch``); a single delivery is a batch of one."""

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        return (await self.deliver_batch(client, [item]))[0]

    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        raise NotImplementedError


@runtime_checkable
class SupportsBatch(Protocol):
    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        """One verdict per item, in order: a failed item is retried or dead-lettered alone."""
        ...


@dataclass(frozen=True)
class RemoteStatus:
    remote_id: str
    status: str  # the vendor's own name for the state, for display
    closed: bool  # resolved/done/closed by the vendor's state category, not its display name
    url: str | None = None


@runtime_checkable
class SupportsSyncBookmark(Protocol):
    """A status reader that reads "what changed since the last run" (Freshservice): the sync job hands it the
    bookmark the last complete run left in ``sync_state`` and keeps the one it returns (None keeps the old)."""

    def begin_sync(self, saved: dict[str, Any] | None, now: float) -> None: ...

    def end_sync(self) -> dict[str, Any] | None: ...


@runtime_checkable
class SupportsStatus(Protocol):
    async def read_status(self, client: httpx.AsyncClient, refs: Sequence[Ref]) -> list[RemoteStatus]:
        """The current state of these linked tickets (batched); missing tickets are left out."""
        ...


# --- helpers for connectors ------------------------------------------------------------------------------


def retry_after_secs(response: httpx.Response, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if (seconds := parse_uint(value)) is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def short_body(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def classify_status(response: httpx.Response) -> Verdict:
    """Network errors, 408, 425, 429 and 5xx (but 501) retry; other 4xx are permanent."""
    code = response.status_code
    if 200 <= code < 300:
        return Verdict(Outcome.OK, f"HTTP {code}", status=code)
    if code in (408, 425, 429) or (code >= 500 and code != 501):
        return Verdict(Outcome.RETRY, f"HTTP {code}: {short_body(response, 200)}", retry_after=retry_after_secs(response),
                       status=code)
    return Verdict(Outcome.PERMANENT, f"HTTP {code}: {short_body(response)}", status=code)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it is not JSON or not an object (an error page, a proxy's HTML)."""
    try:
        doc = response.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def verdict_for_exception(exc: BaseException, timeout: float | None = None) -> Verdict:
    """Exceptions while delivering: template errors are permanent, the network is retried."""
    from hub.errors import TemplateError

    if isinstance(exc, TemplateError):
        return Verdict(Outcome.PERMANENT, f"template error: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        after = f" after {timeout:g} s" if timeout else ""
        return Verdict(Outcome.RETRY, f"timeout{after} ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return Verdict(Outcome.RETRY, f"network error: {type(exc).__name__}: {exc}")
    logging.getLogger("hub.delivery").error("connector error: %s", exc, exc_info=exc)
    return Verdict(Outcome.RETRY, f"internal error: {type(exc).__name__}: {exc}")
