"""``notion``: one page per finding in a Notion database (data source), kept current, status read back.

API: Notion REST API, base URL ``https://api.notion.com`` (requests go to ``{url}/v1/...``) with
``Authorization: Bearer <token>`` and a pinned ``Notion-Version`` header (default 2026-03-11). Create
``POST /v1/pages`` under a ``data_source_id`` parent; update ``PATCH /v1/pages/{id}``; page body
``PATCH /v1/blocks/{id}/children``; comments ``POST /v1/comments``; lookups and status sync
``POST /v1/data_sources/{id}/query``; done statuses from ``GET /v1/data_sources/{id}`` (status group
"Complete"). Docs: https://developers.notion.com/reference/intro, limits:
https://developers.notion.com/reference/request-limits. Field mapping lives in hub/builtin_mappings/notion/.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, Ref, RemoteStatus, TargetConfig, Verdict
from hub.connector.config import SyncConfig
from hub.connector.http import HttpConnector, classify_status, json_object, short_body
from hub.errors import HubError
from hub.models import TICKET_KINDS
from hub.strict import Loc, StrictModel
from hub.urlpath import segment

log = logging.getLogger("hub.connectors.notion")
MAX_TEXT, MAX_ITEMS, MAX_BLOCKS, MAX_URL = 2000, 100, 100, 2000  # Notion's request limits (400 validation_error)
RETRY_CODES = frozenset({"rate_limited", "service_overload", "internal_server_error", "service_unavailable",
                         "gateway_timeout", "conflict_error"})
NEW_PAGE = "{new_page_id}"  # `hub render` preview of steps that follow a create


class NotionAuth(StrictModel):
    token: SecretStr = Field(description="Integration secret (ntn_...), OAuth access token or personal access token.")


class NotionProperties(StrictModel):
    title: str = Field("Name", description="The title property.")
    severity: str | None = Field("Severity", description="A select property for the severity; null: not written.")
    status: str = Field("Status", description="The status property moved between open_status and resolved_status.")
    finding_id: str = Field("Finding ID", description="A rich_text property holding the finding id: the hub's "
                                                      "correlation marker (retried creates look the page up by it).")
    reference: str | None = Field("Reference", description="A url property for the first reference; null: not written.")
    sla_due: str | None = Field("SLA due", description="A date property for the SLA due date; null: not written.")


class NotionConfig(TargetConfig):
    auth: NotionAuth = Field(description="`{token}`: sent as `Authorization: Bearer <token>`.")
    data_source_id: str = Field(min_length=1, description="The data source pages are created in (from "
                                                          "`GET /v1/databases/{database_id}`: `data_sources[].id`).")
    notion_version: str = Field("2026-03-11", pattern=r"^\d{4}-\d{2}-\d{2}$", description="Notion-Version header.")
    properties: NotionProperties = Field(default_factory=NotionProperties,
                                         description="Property names in the database.")
    open_status: str = Field("Not started", description="Status option of an open (or reopened) finding.")
    resolved_status: str = Field("Done", description="Status option a resolved finding moves its page to.")
    done_statuses: list[str] | None = Field(None, description="Status options that count as closed for sync-back; "
                                                              "default: the options of the status group \"Complete\".")
    sync: SyncConfig = Field(default_factory=SyncConfig, description="How often page status is read back.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if self.done_statuses is not None and self.open_status in self.done_statuses:
            yield ("done_statuses",), (f"contains open_status {self.open_status!r}: every page would resolve its "
                                       "finding at the next sync")


class NotionConnector(HttpConnector[NotionConfig]):
    """Notion pages as tickets: created once per finding, updated, commented, closed, read back."""

    name: ClassVar[str] = "notion"
    Config = NotionConfig
    default_url = "https://api.notion.com"
    payloads = ("page", "update", "comment")
    work_items = True
    kinds = TICKET_KINDS
    # Notion allows an average of 3 requests/s per connection; the hub paces deliveries, and a delivery here is
    # 1 (create) to 4 (lookup, create, update, comment) requests, about 2 on average.
    default_rate_limit = 1.5
    status_batch = MAX_ITEMS  # finding ids per `or` filter of one data source query

    _done: frozenset[str] | None = None  # done_statuses looked up once per connector instance

    @cached_property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.config.auth.token.get_secret_value()}",
                "notion-version": self.config.notion_version, "content-type": "application/json"}

    def request(self, method: str, path: str, body: Any = None) -> Outbound:
        """An exact Notion request; bodies are cut to Notion's limits first (what was cut is logged)."""
        cuts: list[str] = []
        content = orjson.dumps(fit(body, cuts)) if body is not None else b""
        if cuts:
            log.warning("target %s: %s %s cut to Notion's limits: %s", self.target, method, path, "; ".join(cuts))
        return Outbound(method, f"{self.base_url}/v1/{path}", self.headers, content, frozenset({"authorization"}),
                        {"cut": cuts})

    def create(self, item: Item, ctx: dict[str, Any]) -> Outbound:
        doc = self.mapping.render_json("page", ctx)
        props = doc.setdefault("properties", {})
        props[self.config.properties.finding_id] = {"rich_text": rich(self._finding_id(item))}  # the marker, always
        return self.request("POST", "pages", {"parent": {"type": "data_source_id",
                                                         "data_source_id": self.config.data_source_id}, **doc})

    def steps(self, item: Item, ctx: dict[str, Any], page_id: str) -> list[Outbound]:
        """What a lifecycle step does to an existing page: properties, appended blocks, a comment."""
        page = page_id if page_id == NEW_PAGE else segment(page_id)  # an id from Notion's answer, in the path
        out = []
        if self.mapping.applies("update", item.kind):
            doc = self.mapping.render_json("update", ctx)
            if doc.get("properties"):
                out.append(self.request("PATCH", f"pages/{page}", {"properties": doc["properties"]}))
            if doc.get("children"):
                out.append(self.request("PATCH", f"blocks/{page}/children", {"children": doc["children"]}))
        if self.mapping.applies("comment", item.kind) and (text := self.mapping.render_text("comment", ctx).strip()):
            out.append(self.request("POST", "comments", {"parent": {"page_id": page_id}, "rich_text": rich(text)}))
        return out

    def render(self, item: Item) -> list[Outbound]:
        ctx = self.context(item)
        if item.linked_id:
            return self.steps(item, ctx, item.ref.remote_id)  # type: ignore[union-attr, arg-type]
        first = [self.create(item, ctx)]
        return first if item.kind == "finding.created" else first + self.steps(item, ctx, NEW_PAGE)

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        ctx = self.context(item)
        page: dict[str, Any] | None = None
        if item.linked_id:
            assert item.ref is not None and item.ref.remote_id
            page_id, url, status = item.ref.remote_id, item.ref.url, item.ref.remote_status
        else:
            if item.ref is not None and (item.attempt > 1 or item.kind != "finding.created"):
                # A previous attempt (or a create that died) may have made the page: adopt it, never duplicate.
                found, verdict = await self.find(client, self._finding_id(item))
                if verdict.outcome is not Outcome.OK:
                    return verdict
                page = found[0] if found else None
            if page is None:
                response = await self.send(client, self.create(item, ctx))
                if (verdict := self.check(response, item)).outcome is not Outcome.OK:
                    return verdict
                page = response.json()
            page_id, url, status = page["id"], page.get("url"), self.status_of(page)
        for out in self.steps(item, ctx, page_id):
            response = await self.send(client, out)
            if (verdict := self.check(response, item)).outcome is not Outcome.OK:
                return verdict
            if (doc := response.json()).get("object") == "page":
                url, status = doc.get("url") or url, self.status_of(doc) or status
        return Verdict(Outcome.OK, f"page {page_id}", remote_id=page_id, remote_url=url, remote_status=status)

    def check(self, response: httpx.Response, item: Item) -> Verdict:
        verdict = self.classify(response)
        if verdict.status == 409 and item.attempt > 1:  # conflict_error: retried once already
            return Verdict(Outcome.PERMANENT, verdict.reason, status=409)
        return verdict

    def classify(self, response: httpx.Response) -> Verdict:
        verdict = classify_status(response)
        if verdict.outcome is Outcome.OK:
            return verdict
        body = json_object(response)
        code, message = str(body.get("code", "")), str(body.get("message", "")) or short_body(response, 200)
        reason = f"HTTP {response.status_code}" + (f" {code}" if code else "") + f": {message}"
        if hint := self.hint(code, response.status_code):
            reason += f" ({hint})"
        outcome = Outcome.RETRY if code in RETRY_CODES or verdict.outcome is Outcome.RETRY else Outcome.PERMANENT
        return Verdict(outcome, reason, retry_after=verdict.retry_after, status=response.status_code)

    def hint(self, code: str, status: int) -> str:
        cfg = self.config
        if code == "unauthorized" or status == 401:
            return f"check NOTION_TOKEN / the auth.token of target {self.target!r}: the integration secret is not valid"
        if code == "restricted_resource" or status == 403:
            return "the integration lacks a capability: give it read, update and insert content and comments"
        if code == "object_not_found" or status == 404:
            return (f"share the database with the integration (database ... menu > Connections) and check "
                    f"data_source_id {cfg.data_source_id}")
        if code == "validation_error":
            return ("check that the names in properties.* exist in the data source with the types the mapping writes, "
                    f"and that {cfg.open_status!r} / {cfg.resolved_status!r} are options of {cfg.properties.status!r}")
        if code in ("missing_version", "invalid_request_url", "invalid_request"):
            return f"check notion_version ({cfg.notion_version}) and url ({self.base_url})"
        return ""

    async def find(self, client: httpx.AsyncClient, finding_id: str) -> tuple[list[dict[str, Any]], Verdict]:
        """Pages carrying this finding id in the marker property."""
        return await self.query(client, self._marker(finding_id))

    async def query(self, client: httpx.AsyncClient, flt: dict[str, Any]) -> tuple[list[dict[str, Any]], Verdict]:
        """Every page of a filtered data source query (follows ``next_cursor``)."""
        pages: list[dict[str, Any]] = []
        body: dict[str, Any] = {"filter": flt, "page_size": MAX_ITEMS}
        while True:
            response = await self.send(client, self.request("POST", f"data_sources/{self.config.data_source_id}/query",
                                                            body))
            if (verdict := self.classify(response)).outcome is not Outcome.OK:
                return pages, verdict
            doc = response.json()
            pages += [p for p in doc.get("results", []) if p.get("object") == "page"]
            if not doc.get("has_more") or not doc.get("next_cursor"):
                return pages, verdict
            body = {**body, "start_cursor": doc["next_cursor"]}

    async def read_status(self, client: httpx.AsyncClient, refs: Sequence[Ref]) -> list[RemoteStatus]:
        """Status of linked pages: one query per 100 finding ids; closed when the status is a done status."""
        done = await self.done_statuses(client)
        wanted = {r.remote_id: r.finding_id for r in refs if r.remote_id}
        ids = sorted(set(wanted.values()))
        out = []
        for i in range(0, len(ids), MAX_ITEMS):
            pages, verdict = await self.query(client, {"or": [self._marker(f) for f in ids[i:i + MAX_ITEMS]]})
            if verdict.outcome is not Outcome.OK:
                raise HubError(f"reading page status failed: {verdict.reason}")
            for page in pages:
                if page["id"] in wanted and not page.get("in_trash"):
                    status = self.status_of(page) or ""
                    out.append(RemoteStatus(page["id"], status, status in done, page.get("url")))
        return out

    async def done_statuses(self, client: httpx.AsyncClient) -> frozenset[str]:
        """``done_statuses``, else the options in the status property's "Complete" group, else resolved_status."""
        if self.config.done_statuses is not None:
            return frozenset(self.config.done_statuses)
        if self._done is None:
            response = await self.send(client, self.request("GET", f"data_sources/{self.config.data_source_id}"))
            if (verdict := self.classify(response)).outcome is not Outcome.OK:
                raise HubError(f"reading the data source schema failed: {verdict.reason}")
            prop = response.json().get("properties", {}).get(self.config.properties.status) or {}
            status = prop.get("status") or {}
            names = {o["id"]: o["name"] for o in status.get("options", [])}
            group = next((g for g in status.get("groups", []) if g.get("name") == "Complete"), None)
            done = {names[i] for i in group["option_ids"] if i in names} if group else {self.config.resolved_status}
            if self.config.open_status in done:  # else every new page would resolve its finding
                log.error("target %s: open_status %r is in the status group Complete; it does not count as closed",
                          self.target, self.config.open_status)
            self._done = frozenset(done - {self.config.open_status})
        return self._done

    def status_of(self, page: dict[str, Any]) -> str | None:
        value = page.get("properties", {}).get(self.config.properties.status) or {}
        option = value.get("status") or value.get("select")  # a select used as status works too
        return option.get("name") if isinstance(option, dict) else None

    def _marker(self, finding_id: str) -> dict[str, Any]:
        return {"property": self.config.properties.finding_id, "rich_text": {"equals": finding_id}}

    @staticmethod
    def _finding_id(item: Item) -> str:
        return item.ref.finding_id if item.ref is not None else str((item.finding or {}).get("id", ""))


def rich(text: str) -> list[dict[str, Any]]:
    """Plain text as a rich-text array of 2,000-character text objects."""
    return [{"type": "text", "text": {"content": text[i:i + MAX_TEXT]}} for i in range(0, len(text), MAX_TEXT)] \
        or [{"type": "text", "text": {"content": ""}}]


def fit(doc: Any, cuts: list[str], path: str = "") -> Any:
    """Split and cut a request body to Notion's limits, listing in ``cuts`` what had to go."""
    if isinstance(doc, list):
        return [fit(x, cuts, f"{path}[{i}]") for i, x in enumerate(doc)]
    if not isinstance(doc, dict):
        return doc
    out = {}
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key in ("rich_text", "title") and isinstance(value, list):
            value = [part for x in value for part in _split(x, cuts, where)]
            limit = MAX_ITEMS
        else:
            limit = MAX_BLOCKS if key == "children" and isinstance(value, list) else 0
        if limit and len(value) > limit:
            cuts.append(f"{where}: {len(value) - limit} of {len(value)} items")
            value = value[:limit]
        if key == "url" and isinstance(value, str) and len(value) > MAX_URL:
            cuts.append(f"{where}: a URL of {len(value)} characters")
            value = None
        out[key] = fit(value, cuts, where)
    return out


def _split(item: Any, cuts: list[str], where: str) -> list[Any]:
    """One rich-text object with more than 2,000 characters becomes several; an over-long link is dropped."""
    text = item.get("text") if isinstance(item, dict) else None
    if not isinstance(text, dict) or not isinstance(text.get("content"), str):
        return [item]
    link = text.get("link")
    if isinstance(link, dict) and len(str(link.get("url", ""))) > MAX_URL:
        cuts.append(f"{where}: a link of {len(str(link.get('url')))} characters")
        text = {k: v for k, v in text.items() if k != "link"}
    content = text["content"]
    return [{**item, "text": {**text, "content": content[i:i + MAX_TEXT]}}
            for i in range(0, max(len(content), 1), MAX_TEXT)]
