"""Pull jobs: page through a platform's list endpoint on a schedule and store each page as an event.

Pages become events of their source (``verified_by: poll``), so they are durable, processed by the
source's adapter like a webhook and reprocessable. ``sync_state`` keeps the ``since`` watermark (run
start time of the last complete run) and the page to resume from, written after every stored page so
that a run stopped early (an error, a rate-limit wait longer than ``max_wait_secs``, or the process
killed) resumes after the last page it stored. ``X-RateLimit-Remaining: 0`` waits for
``X-RateLimit-Reset``; 429 honours ``Retry-After``; ``rate_limit`` keeps the platform's sliding
window on our side. With ``parents`` the run lists the parents (e.g. Obexum's engagements) and pages
through ``url`` once per parent id. A complete run of a ``full_import`` source ends with a ``PollComplete`` mark
(hub/pollmarks.py) that resolves the open findings the run did not see. One run per source at a time.
``mode: secuprobe`` lists scans, waits for ``completed`` ones, then reads their vulnerabilities.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from hub import pollmarks
from hub.config import PollConfig
from hub.connector import USER_AGENT
from hub.connector.http import rate_limit_wait, retry_after_secs, short_body
from hub.ids import iso
from hub.pacing import SlidingWindow
from hub.store import Store, sync_state
from hub.store.events import NewEvent
from hub.urlpath import segment

log = logging.getLogger("hub.polling")
LIST_KEYS = ("data", "findings", "items", "results", "vulnerabilities", "scans")


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


def http_error(r: httpx.Response) -> str:
    """Why the run stopped on an HTTP error: status, what it usually means, the endpoint and the platform's words."""
    hint = {401: " (the API did not accept the credentials)",
            403: " (the credentials lack a permission or scope this endpoint needs)"}.get(r.status_code, "")
    return f"HTTP {r.status_code}{hint} on GET {r.request.url.path}: {short_body(r, 200)}"


class Poller:
    """``on_stored`` is called after each new event (a page, or the end mark) is committed."""

    def __init__(self, source: str, cfg: PollConfig, store: Store, *, clock: Callable[[], float],
                 on_stored: Callable[[], None], transport: httpx.AsyncBaseTransport | None = None):
        self.source, self.cfg, self.store, self.clock, self.on_stored = source, cfg, store, clock, on_stored
        self.transport = transport
        self.lock = asyncio.Lock()
        self.key = f"poll:{source}"
        # One window per source: its token's requests across runs (not shared with another process's `hub poll`).
        limit = cfg.rate_limit
        self.window = SlidingWindow(limit.requests, limit.per_secs, clock) if limit is not None else None
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests wait on their own clock

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
            state = sync_state.get(self.store.conn, self.key) or {}
            report = PollReport()
            try:
                if self.cfg.mode == "secuprobe":
                    await self._secuprobe(client, state, report)
                else:
                    await self._pages(client, state, report)
            except PollStop as stop:
                report.error = str(stop)
                log.warning("poll %s: stopped after %d page(s), resumes next run: %s", self.source, report.pages, stop)
            state["last_run"], state["last_error"] = iso(self.clock()), report.error
            await self.store.write(lambda conn: sync_state.put(conn, self.key, state, iso(self.clock())))
            return report

    async def _get(self, client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Any:
        for _ in range(4):
            while self.window is not None and (room := self.window.delay()) > 0:
                await self.sleep(room)
            try:
                r = await client.get(url, params=params)
            except httpx.HTTPError as exc:
                raise PollStop(f"network error: {type(exc).__name__}: {exc}") from None
            finally:
                if self.window is not None:
                    self.window.add()
            if r.status_code == 429:
                wait = retry_after_secs(r)
                wait = 60.0 if wait is None else wait
                if wait > self.cfg.max_wait_secs:
                    raise PollStop(f"HTTP 429, Retry-After {wait:.0f} s")
                await self.sleep(wait)
                continue
            if r.status_code >= 400:
                raise PollStop(http_error(r))
            await self._respect_rate_limit(r)
            try:
                return r.json()
            except ValueError:
                raise PollStop("the answer is not JSON") from None
        raise PollStop("still rate limited after 3 waits")

    async def _respect_rate_limit(self, r: httpx.Response) -> None:
        if (wait := rate_limit_wait(r)) is None:
            return
        if wait > self.cfg.max_wait_secs:
            raise PollStop(f"rate limit used up until {r.headers['x-ratelimit-reset']}")
        if wait > 0:
            await self.sleep(wait)

    async def _store(self, body: bytes, key: str, scope: str | None, url: str | None = None) -> bool:
        return await self._insert(pollmarks.page(self.source, iso(self.clock()), key, body, url or self.cfg.url, scope))

    async def _insert(self, event: NewEvent) -> bool:
        _, duplicate = await self.store.insert_event(event)
        if not duplicate:
            self.on_stored()
        return not duplicate

    async def _save(self, state: dict[str, Any]) -> None:
        """Write the resume point now: a process killed mid-run resumes after the last page it stored."""
        await self.store.write(lambda conn: sync_state.put(conn, self.key, state, iso(self.clock())))

    async def _pages(self, client: httpx.AsyncClient, state: dict[str, Any], report: PollReport) -> None:
        cfg = self.cfg
        resume = state.get("resume") or {}
        started = resume.get("started") or iso(self.clock())
        since = resume.get("since", state.get("since")) if cfg.since_param else None
        resume = state["resume"] = {**resume, "started": started, "since": since, "page": resume.get("page", 1),
                                    "cursor": resume.get("cursor")}
        if cfg.parents is None:
            await self._walk(client, cfg.url, state, report)
        else:
            if "parents" not in resume:
                resume.update(parents=await self._parent_ids(client, report), parent=0)
                await self._save(state)
            while resume["parent"] < len(resume["parents"]):
                await self._walk(client, cfg.url.replace("{id}", segment(resume["parents"][resume["parent"]])),
                                 state, report)
                resume.update(parent=resume["parent"] + 1, page=1, cursor=None)
                await self._save(state)
        state.pop("resume", None)
        report.complete = True
        if cfg.since_param:
            state["since"] = started
        if cfg.full_import:
            await self._insert(pollmarks.PollComplete(self.source, started).event(self.source, iso(self.clock())))

    async def _walk(self, client: httpx.AsyncClient, url: str, state: dict[str, Any], report: PollReport) -> None:
        """Page through one list from ``state["resume"]``: each page stored, then the resume point moved past it."""
        cfg, resume = self.cfg, state["resume"]
        scope = self.source if cfg.full_import else None
        while True:
            if report.pages >= cfg.max_pages:
                raise PollStop(f"stopped at max_pages ({cfg.max_pages})")
            page, cursor, since = resume["page"], resume["cursor"], resume["since"]
            params: dict[str, Any] = dict(cfg.params)
            if cfg.pagination == "page":
                params.update({cfg.page_param: page, cfg.size_param: cfg.page_size})
            elif cfg.pagination == "cursor" and cursor:
                params[cfg.cursor_param] = cursor
            if since and cfg.since_param:
                params[cfg.since_param] = since
            doc = await self._get(client, url, params)
            body = orjson.dumps(doc)
            # Identical pages are stored once, except in a full import, where every page must be seen again.
            key = hashlib.sha256((resume["started"] if cfg.full_import else "").encode() + body).hexdigest()
            report.pages += 1
            report.stored += await self._store(body, key, scope, url)
            items = items_of(doc, cfg.items_path)
            if cfg.pagination == "none":
                return
            if cfg.pagination == "cursor":
                resume["cursor"] = path_get(doc, cfg.cursor_path)
                if not resume["cursor"] or not items:
                    return
            else:
                if not items or is_last_page(doc, page, cfg.page_size, len(items)):
                    return
                resume["page"] = page + 1
            await self._save(state)

    async def _parent_ids(self, client: httpx.AsyncClient, report: PollReport) -> list[str]:
        """The id of every parent the credentials can see (all pages of the parents list), each once."""
        cfg, parents = self.cfg, self.cfg.parents
        assert parents is not None
        found: dict[str, None] = {}
        page = 1
        while True:
            if report.pages >= cfg.max_pages:
                raise PollStop(f"stopped at max_pages ({cfg.max_pages}) while listing parents")
            params = {cfg.page_param: page, cfg.size_param: cfg.page_size} if parents.pagination == "page" else {}
            doc = await self._get(client, parents.url, params)
            report.pages += 1
            items = items_of(doc, parents.items_path)
            for item in items:
                pid = path_get(item, parents.id_path)
                if isinstance(pid, str | int) and not isinstance(pid, bool) and str(pid):
                    found[str(pid)] = None
                else:
                    log.warning("poll %s: a parent without %s skipped", self.source, parents.id_path)
            if parents.pagination == "none" or not items or is_last_page(doc, page, cfg.page_size, len(items)):
                return list(found)
            page += 1

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
