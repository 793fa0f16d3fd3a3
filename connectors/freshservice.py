"""``freshservice``: one Freshservice incident per finding, kept current, resolved when fixed, read back.

Freshservice API v2 (REST, JSON; no OpenAPI spec): https://api.freshservice.com/ . Every account has its
own base URL ``https://<domain>.freshservice.com``, so ``url`` is required; requests go to
``{url}/api/v2/tickets...``. Auth: HTTP Basic, the agent's API key as user name and ``X`` as password.
Facts and their sources: docs/connectors/freshservice.md.

Freshservice has no idempotency key, so the create request carries a correlation tag
(``fh-`` + the finding id); a retried create first looks for that tag with ``/tickets/filter``.

Status sync lists the tickets updated since the last complete run (``GET /tickets?updated_since=``, 100 a
page) instead of one view per ticket: a run costs pages of account activity, not one call per open finding.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, Ref, RemoteStatus, TargetConfig, Verdict
from hub.connector.config import SyncConfig
from hub.connector.http import HttpConnector, classify_status, json_object, retry_after_secs, short_body
from hub.errors import HubError, TemplateError
from hub.ids import id_time, iso, parse_iso, parse_uint
from hub.models import TICKET_KINDS
from hub.strict import Loc, StrictModel
from hub.urlpath import segment

STATUS_NAMES = {2: "Open", 3: "Pending", 4: "Resolved", 5: "Closed"}  # vendor/freshservice/ticket-enums.json
SOURCES = frozenset({*range(1, 16), 18})
OPEN = 2
NEW_TICKET = "{new ticket id}"  # `hub render` preview of steps that follow a create
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PER_PAGE = 100  # the ticket list's largest page
LIST_PAGES = 10  # past 1,000 changed tickets a run reads its linked tickets alone: bounded, and likely cheaper
OVERLAP_SECS = 300  # each listing starts this much before the last run began: clock skew and in-flight edits
_GONE_TICKET = object()  # read_one: the ticket is deleted or merged away


@dataclass
class _SyncRun:
    """One status sync run: the tickets changed since ``since`` (listed once, then matched to each batch)."""

    started: float  # hub clock when the run began: the next run's bookmark
    known: frozenset[str]  # tickets the last complete run covered: unchanged ones need no read
    since: float | None = None  # epoch seconds the listing starts at (None on a first run, until the refs come)
    tried: bool = False  # the listing is made once per run, by the first batch
    changed: dict[str, Any] | None = None  # ticket id -> status; None: not listed (paused, too long, no bound)
    complete: bool = True  # False after a pause: the bookmark stays where it was
    covered: set[str] = field(default_factory=set)  # tickets this run vouches for: the next run's ``known``

    def made(self, finding_id: str) -> float | None:
        """When the finding was made, read from its id; None for ids not made by the hub (or dated after now)."""
        made = id_time(finding_id)
        return made if made is not None and made <= self.started + 86400 else None

    def listed(self, ref: Ref) -> bool:
        """Whether the listing shows this ticket if it changed: the last complete run covered it, or its finding
        (so its ticket) is younger than the listing's window."""
        made = self.made(ref.finding_id)
        return str(ref.remote_id) in self.known or (made is not None and self.since is not None
                                                    and made >= self.since)


class FreshserviceError(HubError):
    """Reading ticket status failed (the sync job logs it and tries again next run)."""


class FreshserviceAuth(StrictModel):
    api_key: SecretStr = Field(description="API key of the Freshservice agent the hub acts as (Profile settings).")


class FreshserviceConfig(TargetConfig):
    """Where tickets go (account URL, requester, group/workspace) and how they are resolved and read back."""

    url: str = Field(
        description="https://<domain>.freshservice.com (http:// only for localhost test doubles).")
    auth: FreshserviceAuth = Field(description="API key auth (HTTP Basic, key as user name, X as password).")
    requester_email: str | None = Field(None, description="Requester of every ticket (unknown emails become contacts).")
    requester_id: int | None = Field(None, description="Requester id instead of requester_email.")
    group_id: int | None = Field(None, description="Agent group the tickets are assigned to.")
    workspace_id: int | None = Field(None, description="Workspace of the tickets (accounts with workspaces).")
    department_id: int | None = Field(None, description="Department of the tickets.")
    category: str | None = Field(None, description="Ticket category.")
    source: int = Field(14, description="Ticket source code; 14 = Alerts (2 = Portal).")
    custom_fields: dict[str, Any] = Field(default_factory=dict, description="Custom fields sent on create.")
    resolved_status: Literal[4, 5] = Field(4, description="Status set when the finding resolves: 4 Resolved, 5 Closed.")
    resolve_custom_fields: dict[str, Any] = Field(default_factory=dict,
                                                  description="Custom fields sent with the resolve (closure-required).")
    closed_statuses: list[int] = Field([4, 5], min_length=1, description="Status codes read back as closed.")
    correlation_tag_prefix: str = Field("fh-", pattern=r"^[A-Za-z0-9_.-]{1,8}$",
                                        description="Prefix of the tag that carries the finding id.")
    correlation_query: str | None = Field("tag:'{tag}'", max_length=400,
                                          description="Filter query finding an earlier create ({tag}, {finding_id}); "
                                                      "null: never search.")
    rate_limit_reserve: int = Field(20, ge=0, description="Sync pauses when X-RateLimit-Remaining is below this.")
    sync: SyncConfig = Field(default_factory=lambda: SyncConfig(interval_secs=600),
                             description="Status read-back: tickets changed since the last run, 100 per request.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        if (self.requester_email is None) == (self.requester_id is None):
            yield ("requester_email",), "set exactly one of requester_email or requester_id"
        parts = urlsplit(self.url)
        if parts.scheme != "https" and parts.hostname not in LOCAL_HOSTS:
            yield ("url",), "Freshservice is HTTPS only: use https://<domain>.freshservice.com"
        if self.source not in SOURCES:
            yield ("source",), f"unknown source code {self.source} (1-15 or 18; 14 = Alerts, 2 = Portal)"
        if query := self.correlation_query:
            try:
                ok = query.format(tag="", finding_id="") != query and '"' not in query
            except (KeyError, IndexError, ValueError):
                ok = False
            if not ok:
                yield ("correlation_query",), "must use {tag} or {finding_id} (no other braces, no double quotes)"


class FreshserviceConnector(HttpConnector[FreshserviceConfig]):
    """Tickets API v2: create, update (+ private note), resolve/reopen by status code, read back by GET."""

    name: ClassVar[str] = "freshservice"
    Config = FreshserviceConfig
    payloads = ("ticket", "update", "note")
    work_items = True
    kinds = TICKET_KINDS
    default_rate_limit = 0.5  # deliveries/s: Starter allows 100 calls/min per account, 50 creates (targets.md)
    status_batch = 100  # refs are matched to one listing per run; a ticket read alone still checks the reserve
    clock: Callable[[], float] = time.time  # decides whether a due date is already past (tests move it)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.remaining: int | None = None  # X-RateLimit-Remaining of the last answer
        self.sync_paused_until = 0.0
        self.run: _SyncRun | None = None  # between begin_sync and end_sync

    def marker(self, finding_id: str) -> str:
        """The correlation tag; ``fnd_`` is dropped so it stays within 32 characters."""
        return self.config.correlation_tag_prefix + finding_id.removeprefix("fnd_")

    def ticket_url(self, ticket_id: str) -> str:
        """The agent portal page of a ticket."""
        return f"{self.base_url}/a/tickets/{segment(ticket_id)}"

    def request(self, method: str, path: str, op: str, body: Any = None, params: dict[str, Any] | None = None
                ) -> Outbound:
        """An API v2 request with Basic ``<api_key>:X`` auth (masked in ``hub render``)."""
        key = self.config.auth.api_key.get_secret_value()
        headers = {"authorization": "Basic " + base64.b64encode(f"{key}:X".encode()).decode()}
        if body is not None:
            headers["content-type"] = "application/json"
        query = "?" + urlencode(params, quote_via=quote) if params else ""
        return Outbound(method, f"{self.base_url}/api/v2{path}{query}", headers,
                        b"" if body is None else orjson.dumps(body), frozenset({"authorization"}), {"op": op})

    def _render(self, payload: str, item: Item) -> Any:
        return self.mapping.render_json(payload, self.context(item)) if self.mapping.applies(payload, item.kind) \
            else None

    def create_request(self, item: Item) -> Outbound:
        """POST /tickets from the ``ticket`` payload, with the correlation tag added."""
        body = self._render("ticket", item)
        if not isinstance(body, dict) or item.finding is None:
            raise TemplateError("the ticket payload must render a JSON object", "ticket")
        _drop_past_due(body, self.clock())
        tags = [str(t) for t in body.get("tags") or []]
        body["tags"] = tags + [t for t in [self.marker(item.finding["id"])] if t not in tags]
        return self.request("POST", "/tickets", "create", body)

    def due_dates(self, item: Item) -> dict[str, Any]:
        """A reopened finding's new SLA date (counted from the reopen) for the reopen request, unless past or
        ``vars.send_due_by`` is false: the ticket would otherwise be overdue from the moment it reopens."""
        due = (item.finding or {}).get("sla_due_at")
        if not due or not self.mapping.vars.get("send_due_by"):
            return {}
        return dict(_drop_past_due({"due_by": due, "fr_due_by": due}, self.clock()))

    def step_requests(self, item: Item, ticket: str, fresh: bool) -> list[Outbound]:
        """What a lifecycle step sends to an existing ticket (``fresh``: created by this delivery)."""
        ticket = ticket if ticket == NEW_TICKET else segment(ticket)  # an id from Freshservice's answer
        out = []
        if item.kind == "finding.updated" and not fresh and (body := _drop_past_due(self._render("update", item),
                                                                                  self.clock())):
            out.append(self.request("PUT", f"/tickets/{ticket}", "update", body))
        elif item.kind == "finding.resolved":
            cf = self.config.resolve_custom_fields
            body = {"status": self.config.resolved_status, **({"custom_fields": cf} if cf else {})}
            out.append(self.request("PUT", f"/tickets/{ticket}", "resolve", body))
        elif item.kind == "finding.reopened" and not fresh:
            out.append(self.request("PUT", f"/tickets/{ticket}", "reopen", {"status": OPEN, **self.due_dates(item)}))
        if item.kind != "finding.created" and (note := self._render("note", item)):
            out.append(self.request("POST", f"/tickets/{ticket}/notes", "note", note))
        return out

    def render(self, item: Item) -> list[Outbound]:
        ticket = item.linked_id
        if ticket:
            return [] if item.kind == "finding.created" else self.step_requests(item, ticket, False)
        return [self.create_request(item), *self.step_requests(item, NEW_TICKET, True)]

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        """Find or create the finding's ticket, then apply this lifecycle step to it."""
        ticket, how = item.linked_id, "ticket"
        doc: dict[str, Any] = {}
        if ticket is None and item.ref is not None and self.config.correlation_query \
                and (item.attempt > 1 or item.kind != "finding.created"):  # an earlier attempt may have created it
            verdict, doc = await self.find(client, item)
            if verdict is not None:
                return verdict
            ticket, how = (str(doc["id"]), "adopted ticket") if doc else (None, how)
        if ticket is None:
            verdict, doc = await self.call(client, self.create_request(item))
            if verdict.outcome is not Outcome.OK:
                return verdict
            ticket, how = str(doc["id"]), "created ticket"
        status, done = doc.get("status"), [f"{how} #{ticket}"]
        for out in self.step_requests(item, ticket, how == "created ticket"):
            verdict, doc = await self.call(client, out)
            if verdict.outcome is not Outcome.OK:
                return verdict
            status = doc.get("status", status)
            done.append(out.meta["op"])
        return Verdict(Outcome.OK, ", ".join(done), remote_id=ticket, remote_url=self.ticket_url(ticket),
                       remote_status=_status_name(status), status=200)

    async def find(self, client: httpx.AsyncClient, item: Item) -> tuple[Verdict | None, dict[str, Any]]:
        """The oldest ticket carrying this finding's correlation tag (made by an attempt whose answer was lost)."""
        fid = item.finding["id"] if item.finding else ""
        query = (self.config.correlation_query or "").format(tag=self.marker(fid), finding_id=fid)
        workspace = self.config.workspace_id
        params = {"query": f'"{query}"', **({"workspace_id": workspace} if workspace else {})}
        response = await self.send(client, self.request("GET", "/tickets/filter", "find", params=params))
        verdict = self.classify(response)
        if verdict.outcome is not Outcome.OK:
            hint = f"; check correlation_query of target {self.target} (null skips the search)" \
                if verdict.outcome is Outcome.PERMANENT else ""
            return Verdict(verdict.outcome, f"looking for a ticket from an earlier attempt: {verdict.reason}{hint}",
                           retry_after=verdict.retry_after, status=verdict.status), {}
        found = [t for t in json_object(response).get("tickets") or [] if isinstance(t, dict) and "id" in t]
        return None, min(found, key=lambda t: int(t["id"])) if found else {}

    async def call(self, client: httpx.AsyncClient, out: Outbound) -> tuple[Verdict, dict[str, Any]]:
        """Send, classify (with the operation's hints) and return the ticket or note from the answer."""
        response = await self.send(client, out)
        verdict = self.classify(response)
        if verdict.outcome is Outcome.PERMANENT and (hint := _HINTS.get((verdict.status, out.meta["op"]))):
            verdict = Verdict(verdict.outcome, verdict.reason + hint.format(t=self.target), status=verdict.status)
        doc = json_object(response)
        found = doc.get("ticket") or doc.get("conversation") or {}
        if verdict.outcome is Outcome.OK and out.meta["op"] == "create" and "id" not in found:
            verdict = Verdict(Outcome.PERMANENT, f"HTTP {response.status_code} without ticket.id: "
                              f"{short_body(response)}", status=response.status_code)
        return verdict, found

    async def send(self, client: httpx.AsyncClient, out: Outbound) -> httpx.Response:
        response = await super().send(client, out)
        if (left := parse_uint(response.headers.get("x-ratelimit-remaining", ""))) is not None:
            self.remaining = left
        return response

    def classify(self, response: httpx.Response) -> Verdict:
        """Freshservice answers: 400 lists its field errors; 401/403 say which credential or permission to check."""
        code = response.status_code
        if code == 401:
            return Verdict(Outcome.PERMANENT, f"HTTP 401: Freshservice rejected the API key: check auth.api_key of "
                           f"target {self.target} (an active agent's key, sent as Basic <api_key>:X)", status=code)
        if code == 403:
            return Verdict(Outcome.PERMANENT, f"HTTP 403: the agent whose API key target {self.target} uses may not do "
                           f"this: give it a role that can view/create/edit tickets (in its workspace/group): "
                           f"{short_body(response, 200)}", status=code)
        if code == 400 and (errors := json_object(response).get("errors")):
            text = "; ".join(f"{e.get('field') or '?'}: {e.get('message', '')} ({e.get('code', '')})"
                             for e in errors[:5] if isinstance(e, dict))
            described = json_object(response).get("description", "Validation failed")
            return Verdict(Outcome.PERMANENT, f"HTTP 400 {described}: {text}", status=code)
        if code == 429:
            return Verdict(Outcome.RETRY, "HTTP 429: the account's per-minute API limit is used up (shared by every "
                           "integration on the account)", retry_after=retry_after_secs(response), status=code)
        return classify_status(response)

    def begin_sync(self, saved: dict[str, Any] | None, now: float) -> None:
        """A sync run starts: ``saved`` is what the last complete run's ``end_sync`` returned."""
        saved = saved or {}
        run = _SyncRun(now, frozenset(str(i) for i in saved.get("ids") or []))
        try:
            run.since = parse_iso(saved["since"]) - OVERLAP_SECS if saved.get("since") else None
        except (TypeError, ValueError):
            run.known = frozenset()  # unreadable bookmark: start over as on a first run
        self.run = run

    def end_sync(self) -> dict[str, Any] | None:
        """The bookmark to keep when every linked ticket of the run was covered; None keeps the old one."""
        run, self.run = self.run, None
        if run is None or not run.complete or time.monotonic() < self.sync_paused_until:
            return None
        return {"since": iso(run.started), "ids": sorted(run.covered, key=lambda i: (len(i), i))}

    async def read_status(self, client: httpx.AsyncClient, refs: Sequence[Ref]) -> list[RemoteStatus]:
        """The status of each ticket changed since the last run (closed by code in ``closed_statuses``).

        Within a sync run (``begin_sync``) one listing of changed tickets answers every batch; a ticket the
        listing cannot vouch for (new to the sync and older than the window) is read alone, and so is every
        ticket outside a run. Deleted tickets are left out."""
        run = self.run
        refs = [r for r in refs if r.remote_id]
        if run is not None and not run.tried:
            run.tried = True
            if run.since is None:  # first run: since the oldest finding, whose ticket cannot be older
                made = [m for r in refs if (m := run.made(r.finding_id)) is not None]
                run.since = min(made) - OVERLAP_SECS if made else None
            if run.since is not None:
                run.changed = await self.list_changed(client, run.since)
        out: list[RemoteStatus] = []
        for ref in refs:
            rid = str(ref.remote_id)
            if run is not None and run.changed is not None and run.listed(ref):
                run.covered.add(rid)
                if rid not in run.changed:
                    continue  # unchanged since the last run, which stored its status
                status = run.changed[rid]
            else:
                if time.monotonic() < self.sync_paused_until or not self.budget_left():
                    if run is not None:
                        run.complete = False
                    break
                found, status = await self.read_one(client, rid)
                if run is not None and (found or status is _GONE_TICKET):
                    run.covered.add(rid)
                if not found:
                    continue
            out.append(RemoteStatus(rid, _status_name(status) or "?", status in self.config.closed_statuses,
                                    self.ticket_url(rid)))
        return out

    def budget_left(self) -> bool:
        """False (and the sync paused for the rest of the minute) when the account's budget is down to the reserve."""
        if self.remaining is not None and self.remaining < self.config.rate_limit_reserve:
            self.sync_paused_until, self.remaining = time.monotonic() + 60, None
            return False
        return True

    async def list_changed(self, client: httpx.AsyncClient, since: float) -> dict[str, Any] | None:
        """Status of every ticket updated since ``since``, by id; None when paused or longer than ``LIST_PAGES``."""
        stamp = datetime.fromtimestamp(int(since), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed: dict[str, Any] = {}
        for page in range(1, LIST_PAGES + 1):
            if time.monotonic() < self.sync_paused_until or not self.budget_left():
                if self.run is not None:
                    self.run.complete = False
                return None
            params = {"updated_since": stamp, "per_page": PER_PAGE, "page": page,
                      **({"workspace_id": self.config.workspace_id} if self.config.workspace_id else {})}
            response = await self.send(client, self.request("GET", "/tickets", "list", params=params))
            if (tickets := self.checked(response, "listing tickets updated since " + stamp)) is None:
                return None
            rows = [t for t in tickets.get("tickets") or [] if isinstance(t, dict) and "id" in t]
            changed.update((str(t["id"]), t.get("status")) for t in rows)
            if len(rows) < PER_PAGE:
                return changed
        return None  # too many changes to list: read the linked tickets one by one this run

    async def read_one(self, client: httpx.AsyncClient, ticket: str) -> tuple[bool, Any]:
        """GET one ticket: (True, status); (False, _GONE_TICKET) when deleted or merged away (nothing to read,
        ever); (False, None) when the sync paused on a 429."""
        response = await self.send(client, self.request("GET", f"/tickets/{segment(ticket)}", "read"))
        if response.status_code == 404:
            return False, _GONE_TICKET
        if (doc := self.checked(response, f"reading ticket {ticket}")) is None:
            return False, None
        found = doc.get("ticket")
        return True, found.get("status") if isinstance(found, dict) else None

    def checked(self, response: httpx.Response, what: str) -> dict[str, Any] | None:
        """The answer's JSON; None after a 429 (the sync pauses for Retry-After); raises on any other failure."""
        verdict = self.classify(response)
        if verdict.status == 429:
            self.sync_paused_until = time.monotonic() + (verdict.retry_after or 60)
            if self.run is not None:
                self.run.complete = False
            return None
        if verdict.outcome is not Outcome.OK:
            raise FreshserviceError(f"{what}: {verdict.reason}")
        return json_object(response)


_GONE = "; the ticket was deleted or merged, or the agent of target {t} cannot see it"
_HINTS: dict[tuple[int | None, str], str] = {
    (400, "create"): "; the account may make fields mandatory: set them in custom_fields of target {t} "
                     "(GET /api/v2/ticket_form_fields lists them)",
    (400, "resolve"): "; resolving can need custom fields marked 'required on closure': set them in "
                      "resolve_custom_fields of target {t}",
    **{(404, op): _GONE for op in ("update", "resolve", "reopen", "note")},
}


def _drop_past_due(body: Any, now: float) -> Any:
    """A rendered ticket body without ``due_by``/``fr_due_by`` once due_by is past: Freshservice refuses a due
    date in the past (a finding imported after its SLA ran out, a severity raised after its new date), and the
    ticket is better created with the SLA policy's dates than not at all. The breach note says it is late."""
    due = body.get("due_by") if isinstance(body, dict) else None
    try:
        past = isinstance(due, str) and parse_iso(due) <= now
    except ValueError:
        past = False  # not a date: Freshservice's 400 names the field
    if past:
        body.pop("due_by")
        body.pop("fr_due_by", None)
    return body


def _status_name(status: Any) -> str | None:
    return None if status is None else STATUS_NAMES.get(status, str(status))


