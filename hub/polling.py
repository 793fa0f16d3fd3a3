"""Pull jobs: page through a platform's list endpoint on a schedule and store each page as an event.

Pages become events of their source (``verified_by: poll``), so they are durable, processed by the
source's adapter like a webhook and reprocessable. ``sync_state`` keeps the ``since`` watermark (run
start time of the last complete run) and, when a run stops early (an error, or a rate-limit wait
longer than ``max_wait_secs``), the page to resume from. ``X-RateLimit-Remaining: 0`` waits for
``X-RateLimit-Reset``; 429 honours ``Retry-After``. A complete run of a ``full_import`` source ends
with a control event that resolves the open findings the run did not see. One run per source at
a time. ``mode: secuprobe`` lists scans, waits for ``completed`` ones, then reads their vulnerabilities.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from hub.config import PollConfig
from hub.connector import USER_AGENT, retry_after_secs
from hub.ids import iso
from hub.store import sync_state
from hub.store.events import NewEvent
from hub.urlpath import segment

if TYPE_CHECKING:
    from hub.runtime import Hub

log = logging.getLogger("hub.polling")
LIST_KEYS = ("data", "findings", "items", "results", "vulnerabilities", "scans")
CONTROL = "poll.complete"


class PollStop(Exception):
    """The run stops here; the next run resumes."""


@dataclass
class PollReport:
    pages: int = 0
    stored: int = 0
    complete: bool = False
    error: str | None = None


def path_get(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def items_of(doc: Any, items_path: str | None) -> list[Any]:
    if items_path:
        found = path_get(doc, items_path)
        return found if isinstance(found, list) else []
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in LIST_KEYS:
            if isinstance(doc.get(key), list):
                return doc[key]
    return []


def is_last_page(doc: Any, page: int, size: int, count: int) -> bool:
    """From meta (pages / total) when the platform says, else a short page."""
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if isinstance(meta, dict):
        if isinstance(meta.get("pages"), int):
            return page >= meta["pages"]
        per_page = meta.get("per_page") or meta.get("limit") or size
        if isinstance(meta.get("total"), int) and isinstance(per_page, int):
            return page * per_page >= meta["total"]
    return count < size


class Poller:
    def __init__(self, hub: Hub, source: str, transport: httpx.AsyncBaseTransport | None = None):
        self.hub, self.source = hub, source
        cfg = hub.config.sources[source].poll
        assert cfg is not None
        self.cfg: PollConfig = cfg
        self.transport = transport
        self.lock = asyncio.Lock()
        self.key = f"poll:{source}"

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        auth = self.cfg.auth
        if auth is not None and auth.bearer is not None:
            headers["authorization"] = f"Bearer {auth.bearer.get_secret_value()}"
        elif auth is not None and auth.header and auth.value is not None:
            headers[auth.header] = auth.value.get_secret_value()
        return headers

    async def run(self) -> PollReport:
        if self.lock.locked():
            log.info("poll %s: previous run still going; skipped", self.source)
            return PollReport(error="a run is already in progress")
        async with self.lock, httpx.AsyncClient(transport=self.transport, timeout=self.cfg.timeout_secs,
                                                headers=self._headers()) as client:
            state = sync_state.get(self.hub.store.conn, self.key) or {}
            report = PollReport()
            try:
                if self.cfg.mode == "secuprobe":
                    await self._secuprobe(client, state, report)
                else:
                    await self._pages(client, state, report)
            except PollStop as stop:
                report.error = str(stop)
                log.warning("poll %s: stopped after %d page(s), resumes next run: %s", self.source, report.pages, stop)
            state["last_run"], state["last_error"] = iso(self.hub.clock()), report.error
            await self.hub.store.write(lambda conn: sync_state.put(conn, self.key, state, iso(self.hub.clock())))
            return report

    async def _get(self, client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Any:
        for _ in range(4):
            try:
                r = await client.get(url, params=params)
            except httpx.HTTPError as exc:
                raise PollStop(f"network error: {type(exc).__name__}: {exc}") from None
            if r.status_code == 429:
                wait = retry_after_secs(r)
                wait = 60.0 if wait is None else wait
                if wait > self.cfg.max_wait_secs:
                    raise PollStop(f"HTTP 429, Retry-After {wait:.0f} s")
                await asyncio.sleep(wait)
                continue
            if r.status_code >= 400:
                raise PollStop(f"HTTP {r.status_code}: {r.text[:200]}")
            await self._respect_rate_limit(r)
            try:
                return r.json()
            except ValueError:
                raise PollStop("the answer is not JSON") from None
        raise PollStop("still rate limited after 3 waits")

    async def _respect_rate_limit(self, r: httpx.Response) -> None:
        remaining, reset = r.headers.get("x-ratelimit-remaining"), r.headers.get("x-ratelimit-reset")
        if remaining != "0" or not reset:
            return
        try:
            value = float(reset)
        except ValueError:
            return
        wait = value - time.time() if value > 1e9 else value  # epoch seconds, or seconds from now
        if wait > self.cfg.max_wait_secs:
            raise PollStop(f"rate limit used up until {reset}")
        if wait > 0:
            await asyncio.sleep(wait)

    async def _store(self, body: bytes, key: str, scope: str | None) -> bool:
        headers = orjson.dumps({"x-hub-poll-url": self.cfg.url, **({"x-hub-poll-scope": scope} if scope else {})})
        event = NewEvent(self.source, iso(self.hub.clock()), key, "application/json", headers.decode(), body, "poll")
        _, duplicate = await self.hub.store.insert_event(event)
        if not duplicate:
            self.hub.on_event_stored()
        return not duplicate

    async def _pages(self, client: httpx.AsyncClient, state: dict[str, Any], report: PollReport) -> None:
        cfg = self.cfg
        resume = state.get("resume") or {}
        started = resume.get("started") or iso(self.hub.clock())
        since = resume.get("since", state.get("since")) if cfg.since_param else None
        page, cursor = resume.get("page", 1), resume.get("cursor")
        scope = self.source if cfg.full_import else None
        for _ in range(cfg.max_pages):
            params: dict[str, Any] = dict(cfg.params)
            if cfg.pagination == "page":
                params.update({cfg.page_param: page, cfg.size_param: cfg.page_size})
            elif cfg.pagination == "cursor" and cursor:
                params[cfg.cursor_param] = cursor
            if since and cfg.since_param:
                params[cfg.since_param] = since
            state["resume"] = {"started": started, "since": since, "page": page, "cursor": cursor}
            doc = await self._get(client, cfg.url, params)
            body = orjson.dumps(doc)
            # Identical pages are stored once, except in a full import, where every page must be seen again.
            key = hashlib.sha256((started if cfg.full_import else "").encode() + body).hexdigest()
            report.pages += 1
            report.stored += await self._store(body, key, scope)
            items = items_of(doc, cfg.items_path)
            if cfg.pagination == "none":
                break
            if cfg.pagination == "cursor":
                cursor = path_get(doc, cfg.cursor_path)
                if not cursor or not items:
                    break
            else:
                if not items or is_last_page(doc, page, cfg.page_size, len(items)):
                    break
                page += 1
        else:
            raise PollStop(f"stopped at max_pages ({cfg.max_pages})")
        state.pop("resume", None)
        report.complete = True
        if cfg.since_param:
            state["since"] = started
        if cfg.full_import:
            control = orjson.dumps({"findings_hub": CONTROL, "scope": self.source, "since": started})
            await self._store(control, f"{CONTROL}:{started}", None)

    async def _secuprobe(self, client: httpx.AsyncClient, state: dict[str, Any], report: PollReport) -> None:
        """GET /scans, then for each completed scan not yet imported GET /scans/{id}/vulnerabilities."""
        base = self.cfg.url.rstrip("/")
        doc = await self._get(client, base, dict(self.cfg.params))
        report.pages += 1
        imported: list[str] = state.get("imported", [])
        for scan in items_of(doc, self.cfg.items_path):
            scan_id = str(scan.get("scanId") or scan.get("id") or "") if isinstance(scan, dict) else ""
            if not scan_id or scan_id in imported:
                continue
            if "status" not in scan:
                scan = await self._get(client, f"{base}/{segment(scan_id)}", {})
            if scan.get("status") != "completed":
                continue  # queued or running: picked up by a later run once completed
            vulns = await self._get(client, f"{base}/{segment(scan_id)}/vulnerabilities", {})
            body = orjson.dumps({"scan": scan, "vulnerabilities": items_of(vulns, "vulnerabilities"),
                                 "total": vulns.get("total") if isinstance(vulns, dict) else None})
            report.pages += 1
            report.stored += await self._store(body, f"secuprobe:{scan_id}", None)
            imported = [*imported, scan_id][-1000:]
            state["imported"] = imported
        report.complete = True
