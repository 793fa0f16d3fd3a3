"""Enrichment: a webhook that carries only ids is completed from its platform's API before its finding is built.

A source with ``enrich:`` gets an ``Enricher``: one httpx client, a short per-record cache (a burst of webhooks about
one finding costs one GET), the platform's pacing (``X-RateLimit-Remaining: 0`` waits for ``X-RateLimit-Reset``, a
429 for its ``Retry-After``) and retries with a doubling backoff. What to fetch, and how the answers become the same
``Finding`` a poll of the list API gives, is the adapter's (``Enrichable``): this module knows no platform.

The pipeline calls ``Enrichment`` outside the event's write transaction, like parsing. While the API fails
transiently the call raises ``EnrichmentWait``: the event stays pending, marked waiting until the retry time (the
pipeline writes it; hub/store/events.py holds the later events of its source behind it). Once ``wait_max_secs`` have
passed since the event was received, or when the API answers for good that it cannot help (404, 400), the event is
processed with what the webhook had, and each finding's ``raw.enrichment`` says ``enriched: false`` and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from hub.adapters import BUILTIN, Parsed, StoredEvent, adapter_class
from hub.config import EnrichConfig
from hub.connector import USER_AGENT
from hub.connector.http import rate_limit_wait, retry_after_secs, short_body
from hub.ids import parse_iso
from hub.polling import is_last_page, items_of
from hub.pollmarks import PAGE

log = logging.getLogger("hub.enrichment")

CACHE_ENTRIES = 1000  # records kept per source; the oldest goes first
MAX_PAGES = 20  # of one list (a finding's assets)
PAGE_SIZE = 100


@dataclass(frozen=True)
class Fetch:
    """One GET under the source's ``enrich.url``: ``path`` with ids escaped (hub/urlpath.py); ``paged``: a list
    answer (``data`` and ``meta``) read page by page with ``page`` and ``size_param``, the items joined."""

    path: str
    paged: bool = False
    size_param: str = "per_page"


class Enrichable(Protocol):
    """The platform-specific half, implemented by adapters whose platform has an API to read records from."""

    def lookups(self, event: StoredEvent) -> dict[str, list[Fetch]]:
        """The platform's finding ids this stored webhook is about, each with what to GET; {} when it needs none."""
        ...

    def enriched(self, event: StoredEvent, records: dict[str, list[Any]]) -> Parsed:
        """The findings built from the answers (``records[id]`` in the order of ``lookups(event)[id]``)."""
        ...


def can_enrich(cls: Any) -> bool:
    return callable(getattr(cls, "lookups", None)) and callable(getattr(cls, "enriched", None))


def enriching_adapters() -> list[str]:
    return [name for name in BUILTIN if can_enrich(adapter_class(name))]


class EnrichmentWait(Exception):
    """The API cannot answer now: the event waits until ``until`` (the hub's clock) and is tried again."""

    def __init__(self, until: float, reason: str):
        super().__init__(reason)
        self.until, self.reason = until, reason


class Unavailable(Exception):
    """A GET that gave no record: ``retry_at`` when trying again later may help, None when it cannot."""

    def __init__(self, reason: str, retry_at: float | None):
        super().__init__(reason)
        self.reason, self.retry_at = reason, retry_at


class Enrich(Protocol):
    """What the pipeline is given: the sources that enrich, and the call that completes one parsed event."""

    sources: frozenset[str]

    def __call__(self, event: StoredEvent, parsed: Parsed, now: float) -> Awaitable[Parsed]: ...


def marked(parsed: Parsed, note: dict[str, Any]) -> Parsed:
    """``parsed`` with ``raw.enrichment = note`` on each finding: what an operator and a mapping can read."""
    return replace(parsed, findings=[f.model_copy(update={"raw": {**f.raw, "enrichment": note}})
                                     for f in parsed.findings])


class Enricher:
    """One source's API reader. ``transport`` replaces the network in tests (``transports["enrich:<source>"]``)."""

    def __init__(self, source: str, cfg: EnrichConfig, adapter: Enrichable, *, clock: Callable[[], float],
                 transport: httpx.AsyncBaseTransport | None = None):
        self.source, self.cfg, self.adapter, self.clock, self.transport = source, cfg, adapter, clock, transport
        self.cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.not_before = 0.0  # no request before this (the hub's clock): a rate-limit reset, a Retry-After, a backoff
        self.failures = 0  # in a row, for the backoff
        self._paused_reason = "paused by the platform's rate limit"
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._client: httpx.AsyncClient | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        auth = self.cfg.auth
        if auth.bearer is not None:
            headers["authorization"] = f"Bearer {auth.bearer.get_secret_value()}"
        elif auth.header and auth.value is not None:
            headers[auth.header] = auth.value.get_secret_value()
        return headers

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport, timeout=self.cfg.timeout_secs,
                                             headers=self._headers(), base_url=self.cfg.url.rstrip("/"))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, event: StoredEvent, parsed: Parsed, now: float) -> Parsed:
        """The event's findings from the full records; raises EnrichmentWait while the API fails and the event may
        still wait."""
        if event.verified_by == PAGE:
            return parsed  # a poll page is the full record already
        wanted = self.adapter.lookups(event)
        if not wanted:
            return parsed
        try:
            records = {ident: [await self._get(fetch) for fetch in fetches] for ident, fetches in wanted.items()}
        except Unavailable as exc:
            deadline = parse_iso(event.received_at) + self.cfg.wait_max_secs
            if exc.retry_at is not None and now < deadline:  # at least a second: a Retry-After of 0 must not spin
                raise EnrichmentWait(min(max(exc.retry_at, now + 1.0), deadline), exc.reason) from None
            why = exc.reason if exc.retry_at is None else \
                f"gave up after {self.cfg.wait_max_secs:.0f} s (wait_max_secs): {exc.reason}"
            log.warning("%s: %s processed without enrichment: %s", self.source, event.id, why)
            return marked(parsed, {"enriched": False, "reason": why})
        found = self.adapter.enriched(event, records)
        return marked(found, {"enriched": True, "from": [f.path for fs in wanted.values() for f in fs]})

    async def _get(self, fetch: Fetch) -> Any:
        """The answer to one Fetch, from the cache while it is fresh."""
        hit = self.cache.get(fetch.path)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        if fetch.paged:
            items: list[Any] = []
            for page in range(1, MAX_PAGES + 1):
                doc = await self._request(fetch.path, {"page": page, fetch.size_param: PAGE_SIZE})
                found = items_of(doc, None)
                items += found
                if not found or is_last_page(doc, page, PAGE_SIZE, len(found)):
                    break
            answer: Any = items
        else:
            answer = await self._request(fetch.path, {})
        if self.cfg.cache_secs > 0:
            self.cache[fetch.path] = (self.clock() + self.cfg.cache_secs, answer)
            self.cache.move_to_end(fetch.path)
            while len(self.cache) > CACHE_ENTRIES:
                self.cache.popitem(last=False)
        return answer

    async def _request(self, path: str, params: dict[str, Any]) -> Any:
        """One GET, paced: waits up to ``max_inline_wait_secs`` in place, else Unavailable with the retry time."""
        for _ in range(3):
            if (wait := self.not_before - self.clock()) > 0:
                if wait > self.cfg.max_inline_wait_secs:
                    raise Unavailable(self._paused_reason, self.not_before)
                await self.sleep(wait)
            try:
                r = await self.client.get(path, params=params)
            except httpx.HTTPError as exc:
                raise self._failed(f"network error on GET {path}: {type(exc).__name__}") from None
            self._pace(r)
            if r.status_code == 429:
                after = retry_after_secs(r)
                self.not_before = self.clock() + (self.cfg.retry_secs if after is None else after)
                self._paused_reason = f"HTTP 429 on GET {path}: rate limited until the Retry-After"
                continue
            if r.status_code >= 500 or r.status_code == 408:
                raise self._failed(f"HTTP {r.status_code} on GET {path}: {short_body(r, 200)}")
            if r.status_code in (401, 403):  # the key is wrong or lacks a scope: waits for the operator to fix it
                raise self._failed(f"HTTP {r.status_code} on GET {path} (the API did not accept the credentials): "
                                   f"{short_body(r, 200)}")
            if r.status_code >= 400:
                raise Unavailable(f"HTTP {r.status_code} on GET {path}: {short_body(r, 200)}", None)
            self.failures = 0
            try:
                return r.json()
            except ValueError:
                raise Unavailable(f"the answer to GET {path} is not JSON", None) from None
        raise Unavailable(self._paused_reason, self.not_before)

    def _failed(self, reason: str) -> Unavailable:
        """A failure that may pass: no request to this API before the doubling backoff has passed."""
        self.failures += 1
        delay = min(self.cfg.retry_secs * 2 ** (self.failures - 1), self.cfg.retry_max_secs)
        self.not_before = self.clock() + delay
        self._paused_reason = reason
        return Unavailable(reason, self.not_before)

    def _pace(self, r: httpx.Response) -> None:
        """``X-RateLimit-Remaining: 0``: no request before ``X-RateLimit-Reset``."""
        if (wait := rate_limit_wait(r)) is not None and wait > 0:
            self.not_before = max(self.not_before, self.clock() + wait)
            self._paused_reason = f"rate limit used up until X-RateLimit-Reset {r.headers['x-ratelimit-reset']}"


class Enrichment:
    """The enrichers of every source that has ``enrich:``, as the one call the pipeline makes."""

    def __init__(self, enrichers: dict[str, Enricher]):
        self.enrichers = enrichers
        self.sources = frozenset(enrichers)

    async def __call__(self, event: StoredEvent, parsed: Parsed, now: float) -> Parsed:
        enricher = self.enrichers.get(event.source)
        return parsed if enricher is None else await enricher(event, parsed, now)

    async def aclose(self) -> None:
        for enricher in self.enrichers.values():
            await enricher.aclose()
