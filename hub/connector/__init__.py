"""The connector contract: what a target type implements and what the dispatcher relies on.

A connector renders an ``Item`` (one delivery) through its mapping into exact requests, sends them
and classifies the answer into a ``Verdict``: OK, RETRY or PERMANENT. Transport errors never reach
``classify``; the dispatcher turns them into RETRY. Optional capabilities are Protocols checked with
``isinstance``: ``SupportsBatch`` (many items per request, one verdict per item), ``SupportsEncode``
(a batch whose items may be encoded in another process), ``SupportsStatus`` (read ticket state back
for sync) and ``SupportsSyncBookmark``.

This module is the contract only. Beside it: ``hub.connector.config`` (the config blocks every target has;
``TargetConfig`` is re-exported here, being what a connector's Config subclasses and ``Connector``'s type
parameter is bound to), ``hub.connector.http`` (classifying HTTP answers, ``HttpConnector``) and
``hub.connector.batching`` (encode/split/gzip, ``BatchConnector``).
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote

import httpx

from hub.connector.config import TargetConfig

if TYPE_CHECKING:
    from hub.mappings import Mapping

__all__ = ["USER_AGENT", "ConfigT", "Connector", "Item", "Outbound", "Outcome", "Ref", "RemoteStatus",
           "SupportsBatch", "SupportsEncode", "SupportsStatus", "SupportsSyncBookmark", "TargetConfig", "Verdict"]

USER_AGENT = "findings-hub/0.1 (+https://github.com/findings-hub)"  # every client a connector makes sends it


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


ConfigT = TypeVar("ConfigT", bound=TargetConfig)


class Connector(Generic[ConfigT]):
    """Base of every connector: ``class ChatConnector(Connector[ChatConfig])`` types ``self.config`` as a
    ChatConfig. Subclasses set ``name``, ``Config`` (the same class: the config loader validates a target's
    block with it) and implement ``deliver``."""

    name: ClassVar[str]
    Config: ClassVar[type[TargetConfig]] = TargetConfig
    default_url: ClassVar[str | None] = None
    payloads: ClassVar[tuple[str, ...]] = ()  # payload names its mapping must provide
    work_items: ClassVar[bool] = False  # one remote object per finding, linked through external_refs
    default_rate_limit: ClassVar[float | None] = None  # requests/s when the config sets none
    kinds: ClassVar[frozenset[str] | None] = None  # event types it can deliver (None: all)

    def __init__(self, target: str, config: ConfigT, mapping: Mapping, base_dir: Path | None = None):
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
                "target": self._target, "vars": self.mapping.vars, "links": self.links(item)}

    def links(self, item: Item) -> dict[str, str]:
        """The console pages of this delivery and of its finding or (event.received) its event, when
        ``console.public_url`` is set, so a ticket body can link back; empty when it is not."""
        base = self.mapping.public_url
        if not base:
            return {}
        ids = {"delivery": ("deliveries", item.id),
               "finding": ("findings", (item.finding or {}).get("id")),
               "event": ("events", (item.event or {}).get("id"))}
        return {key: f"{base}/ui/{page}/{quote(str(ident), safe='')}" for key, (page, ident) in ids.items() if ident}

    def render(self, item: Item) -> list[Outbound]:
        raise NotImplementedError

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the connector holds (files, caches); called at shutdown."""


@runtime_checkable
class SupportsBatch(Protocol):
    async def deliver_batch(self, client: httpx.AsyncClient, items: Sequence[Item]) -> list[Verdict]:
        """One verdict per item, in order: a failed item is retried or dead-lettered alone."""
        ...


@runtime_checkable
class SupportsEncode(SupportsBatch, Protocol):
    """A batch connector whose ``deliver_batch`` reads an item only through ``encode()`` (or ``item.encoded``,
    set when the dispatcher's render process encoded it already, as ``batching.deliver_chunks`` does): its items
    may be encoded in another process, so the dispatcher may render its big batches on another core."""

    def encode(self, item: Item) -> bytes:
        """The item's bytes in the request body; raises TemplateError when its template fails."""
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
