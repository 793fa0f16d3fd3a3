"""``monday``: one monday.com item per finding, kept current, closed when fixed, status read back.

API: the monday.com platform API (GraphQL), ``POST {url}/v2`` with JSON ``{"query", "variables"}`` and the
headers ``Authorization: <token>`` (no prefix) and a pinned ``API-Version`` (2026-10). Base URL
``https://api.monday.com``. Docs: https://developer.monday.com/api-reference/ (schema for 2026-10:
tests/data/vendor/monday/schema.graphql). Items are created with ``create_item``, changed with
``change_multiple_column_values``, commented with ``create_update`` and read back with ``items(ids:)``.
The finding id sits in a text column: a retried create looks it up with ``items_page_by_column_values``
first, so a lost answer never makes a second item.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr, field_validator

from hub.connector import Item, Outbound, Outcome, Ref, RemoteStatus, TargetConfig, Verdict
from hub.connector.config import SyncConfig
from hub.connector.http import HttpConnector, classify_status, json_object, retry_after_secs, short_body
from hub.models import TICKET_KINDS
from hub.strict import Loc, StrictModel

CREATE = ("mutation CreateItem($board: ID!, $group: String, $name: String!, $cols: JSON, $labels: Boolean) {"
          " create_item(board_id: $board, group_id: $group, item_name: $name, column_values: $cols,"
          " create_labels_if_missing: $labels) { id url } }")
CHANGE = ("mutation ChangeItem($board: ID!, $item: ID!, $cols: JSON!, $labels: Boolean) {"
          " change_multiple_column_values(board_id: $board, item_id: $item, column_values: $cols,"
          " create_labels_if_missing: $labels) { id } }")
COMMENT = "mutation Comment($item: ID!, $body: String!) { create_update(item_id: $item, body: $body) { id } }"
FIND = ("query FindItem($board: ID!, $col: String!, $value: String!) { items_page_by_column_values(board_id: $board,"
        " limit: 1, columns: [{column_id: $col, column_values: [$value]}]) { items { id url } } }")
STATUS = ("query ItemStatus($ids: [ID!], $limit: Int, $cols: [String!]) { items(ids: $ids, limit: $limit) {"
          " id state url column_values(ids: $cols) { id text ... on StatusValue { label index is_done } } } }")
LONG_TEXT_MAX = 2000  # characters a long-text column holds
CUT = "\n[... cut to monday's 2,000-character limit]"
RATE_CODES = frozenset({"complexityexception", "complexity_budget_exhausted", "maxconcurrencyexceeded",
                        "ip_rate_limit_exceeded", "rate_limit_exceeded", "field_limit_exceeded"})
AUTH_CODES = frozenset({"userunauthorizedexception", "unauthorized", "unauthenticated", "not authenticated"})
NEW_ITEM = "<id from create_item>"


class MondayAuth(StrictModel):
    token: SecretStr = Field(description="Personal V2 API token or app/OAuth token, sent as `Authorization: <token>`.")


class MondayColumns(StrictModel):
    status: str = Field("status", description="Status column that carries the lifecycle (and is read back).")
    finding_id: str = Field("text", description="Text column holding the finding id: the correlation marker.")
    priority: str | None = Field("priority", description="Status column for the priority label; null: not set.")
    description: str | None = Field("long_text", description="Long-text column for the description; null: not set.")
    link: str | None = Field("link", description="Link column for the first reference; null: not set.")
    sla_due: str | None = Field("date4", description="Date column for the SLA due date; null: not set.")


class MondayStatusLabels(StrictModel):
    open: str = Field("Working on it", description="Status label of a new or reopened finding's item.")
    resolved: str = Field("Done", description="Status label set when the finding is resolved.")


class MondayConfig(TargetConfig):
    concurrency: int = Field(1, ge=1, le=256, description="Deliveries in flight at once; monday asks for no "
                             "concurrent mutations on one board, so keep 1.")
    auth: MondayAuth = Field(description="`{token}`: the monday API token.")
    api_version: str = Field("2026-10", pattern=r"^\d{4}-\d{2}$", description="`API-Version` header (pinned).")
    board_id: str = Field(pattern=r"^\d+$", description="Board the items go to.")
    group_id: str | None = Field(None, description="Group new items go to; default: the board's top group.")
    columns: MondayColumns = Field(default_factory=MondayColumns, description="Column ids on the board.")
    status_labels: MondayStatusLabels = Field(default_factory=MondayStatusLabels,
                                              description="Status labels for open and resolved.")
    create_labels_if_missing: bool = Field(False, description="Let monday add missing status/priority labels "
                                           "(the token's user must be allowed to change the board).")
    archived_is_closed: bool = Field(False, description="Sync: an archived or deleted item resolves its finding.")
    sync: SyncConfig = Field(default_factory=SyncConfig, description="Status read-back (items' status category).")

    @field_validator("board_id", mode="before")
    @classmethod
    def _board_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def problems(self) -> Iterator[tuple[Loc, str]]:
        yield from super().problems()
        seen: dict[str, str] = {}
        for key, column in self.columns.model_dump().items():
            if column and column in seen:
                yield ("columns", key), f"column {column!r} is already used for {seen[column]}"
            seen.setdefault(column, key)


class MondayError(Exception):
    """A read-back request failed (the sync job logs it and tries again next run)."""


class MondayConnector(HttpConnector[MondayConfig]):
    """monday.com GraphQL: the documents live here, the column values in hub/builtin_mappings/monday/."""

    name: ClassVar[str] = "monday"
    Config = MondayConfig
    default_url = "https://api.monday.com"
    payloads = ("item", "fields", "comment")
    work_items = True
    kinds = TICKET_KINDS
    default_rate_limit = 2.0  # deliveries/s, each 1-3 calls: under the per-minute and mutation limits
    status_batch: ClassVar[int] = 50  # ids per items() query (monday takes up to 100)

    def call(self, op: str, query: str, variables: dict[str, Any]) -> Outbound:
        """One GraphQL request."""
        headers = {"content-type": "application/json", "authorization": self.config.auth.token.get_secret_value(),
                   "api-version": self.config.api_version}
        body = orjson.dumps({"query": query, "variables": variables})
        return Outbound("POST", f"{self.base_url}/v2", headers, body, frozenset({"authorization"}), {"op": op})

    def create(self, item: Item) -> Outbound:
        """``create_item`` with the mapped columns plus the status and the finding-id marker."""
        doc = self.mapping.render_json("item", self.context(item))
        labels = self.config.status_labels
        label = labels.resolved if item.kind == "finding.resolved" else labels.open
        cols = {**doc.get("column_values", {}), self.config.columns.status: {"label": label},
                self.config.columns.finding_id: (item.finding or {}).get("id", "")}
        return self.call("create_item", CREATE, {"board": self.config.board_id, "group": self.config.group_id,
                                                 "name": doc["item_name"], "cols": self._encode(cols),
                                                 "labels": self.config.create_labels_if_missing})

    def steps(self, item: Item, item_id: str, created: bool) -> list[Outbound]:
        """What this lifecycle step changes on an item that exists (``created``: made by this delivery)."""
        ctx = self.context(item)
        cols: dict[str, Any] = {}
        out: list[Outbound] = []
        if not created and self.mapping.applies("fields", item.kind):
            cols.update(self.mapping.render_json("fields", ctx).get("column_values", {}))
        if not created and item.kind in ("finding.resolved", "finding.reopened"):
            cols[self.config.columns.status] = {"label": self._status_after(item.kind, created)}
        if cols:
            out.append(self.call("change_multiple_column_values", CHANGE, {
                "board": self.config.board_id, "item": item_id, "cols": self._encode(cols),
                "labels": self.config.create_labels_if_missing}))
        if self.mapping.applies("comment", item.kind) and (body := self.mapping.render_json("comment", ctx)["body"]):
            out.append(self.call("create_update", COMMENT, {"item": item_id, "body": body}))
        return out

    def render(self, item: Item) -> list[Outbound]:
        """The requests of this step as ``hub render`` shows them (the finding-id look-up is not shown)."""
        if (item_id := item.linked_id) is not None:
            return self.steps(item, item_id, created=False)
        return [self.create(item), *self.steps(item, NEW_ITEM, created=True)]

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        """Find or create the item, then apply the step; OK carries the item id for the link."""
        item_id, url, created = item.linked_id, None, False
        # A ticket may exist although the link says "creating": this delivery's earlier attempt, or an
        # earlier delivery whose create got through but whose answer was lost. Look before creating.
        if item_id is None and item.ref is not None and (item.attempt > 1 or item.kind != "finding.created"):
            verdict, data = await self._call(client, self.call("items_page_by_column_values", FIND, {
                "board": self.config.board_id, "col": self.config.columns.finding_id, "value": item.ref.finding_id}))
            if verdict.outcome is not Outcome.OK:
                return verdict
            if found := (data.get("items_page_by_column_values") or {}).get("items"):
                item_id, url = str(found[0]["id"]), found[0].get("url")
        if item_id is None:
            verdict, data = await self._call(client, self.create(item))
            if verdict.outcome is not Outcome.OK:
                return verdict
            if not (made := data.get("create_item") or {}).get("id"):
                return Verdict(Outcome.RETRY, "monday answered create_item without an item id", status=verdict.status)
            item_id, url, created = str(made["id"]), made.get("url"), True
        for out in self.steps(item, item_id, created):
            verdict, _ = await self._call(client, out)
            if verdict.outcome is not Outcome.OK:
                return verdict  # not linked yet if just created: the retry finds the item by its finding id
        status = self._status_after(item.kind, created)
        return Verdict(Outcome.OK, f"monday item {item_id}" + (" created" if created else ""), remote_id=item_id,
                       remote_url=url, remote_status=status)

    def _status_after(self, kind: str, created: bool) -> str | None:
        """The status label this step leaves on the item (None: untouched)."""
        labels = self.config.status_labels
        if kind == "finding.resolved":
            return labels.resolved
        return labels.open if created or kind in ("finding.created", "finding.reopened") else None

    async def read_status(self, client: httpx.AsyncClient, refs: Sequence[Ref]) -> list[RemoteStatus]:
        """Status of linked items, ``status_batch`` per call; closed by the label's ``is_done`` category."""
        ids = [r.remote_id for r in refs if r.remote_id]
        out: list[RemoteStatus] = []
        for start in range(0, len(ids), self.status_batch):
            chunk = ids[start:start + self.status_batch]
            verdict, data = await self._call(client, self.call("items", STATUS, {
                "ids": chunk, "limit": len(chunk), "cols": [self.config.columns.status]}))
            if verdict.outcome is not Outcome.OK:
                raise MondayError(verdict.reason)
            out += [self._remote(it) for it in data.get("items") or [] if it]
        return out

    def _remote(self, it: dict[str, Any]) -> RemoteStatus:
        state = it.get("state") or "active"
        if state in ("archived", "deleted"):  # a human removed it: only resolves when configured
            return RemoteStatus(str(it["id"]), state, self.config.archived_is_closed, it.get("url"))
        value: dict[str, Any] = next(
            (c for c in it.get("column_values") or [] if c.get("id") == self.config.columns.status), {})
        return RemoteStatus(str(it["id"]), value.get("label") or value.get("text") or "", value.get("is_done") is True,
                            it.get("url"))

    async def _call(self, client: httpx.AsyncClient, out: Outbound) -> tuple[Verdict, dict[str, Any]]:
        response = await self.send(client, out)
        verdict = self.classify(response)
        data = json_object(response).get("data") if verdict.outcome is Outcome.OK else None
        return verdict, data if isinstance(data, dict) else {}

    def _encode(self, cols: dict[str, Any]) -> str:
        """``column_values`` is a JSON-encoded string; long text is cut to monday's limit."""
        text = cols.get(self.config.columns.description or "")
        if isinstance(text, dict) and len(text.get("text") or "") > LONG_TEXT_MAX:
            cols[self.config.columns.description or ""] = {"text": text["text"][:LONG_TEXT_MAX - len(CUT)] + CUT}
        return orjson.dumps(cols).decode()

    def classify(self, response: httpx.Response) -> Verdict:
        """HTTP status first, then GraphQL ``errors`` (monday answers most failures with HTTP 200)."""
        doc, code = json_object(response), response.status_code
        errors = [e for e in doc.get("errors") or [] if isinstance(e, dict)] if isinstance(doc.get("errors"), list) \
            else []
        if not errors and doc.get("error_message"):  # the pre-2025-01 shape, still sent for some transport errors
            errors = [{"message": doc["error_message"], "extensions": {
                "code": doc.get("error_code"), "status_code": doc.get("status_code"), **(doc.get("error_data") or {})}}]
        if errors:
            return self._graphql(errors, response)
        if code in (401, 403):
            return Verdict(Outcome.PERMANENT, f"monday HTTP {code}: {self._check_token()}", status=code)
        verdict = classify_status(response)
        if verdict.outcome is Outcome.OK and not isinstance(doc.get("data"), dict):
            return Verdict(Outcome.RETRY, f"monday HTTP {code} without GraphQL data: {short_body(response, 200)}",
                           status=code)
        return Verdict(verdict.outcome, f"monday {verdict.reason}", retry_after=verdict.retry_after, status=code)

    def _graphql(self, errors: list[dict[str, Any]], response: httpx.Response) -> Verdict:
        err = next((e for e in errors if _code(e) == "daily_limit_exceeded"), None) \
            or next((e for e in errors if _limited(e)), None) or errors[0]
        ext, code, http = _ext(err), _code(err), response.status_code
        what = f"monday {ext.get('code') or 'error'}: {err.get('message') or 'GraphQL error'}"
        if code == "daily_limit_exceeded":  # the account's daily call budget resets at midnight UTC
            return Verdict(Outcome.RETRY, f"{what} (retrying after midnight UTC)", status=429,
                           retry_after=86400 - time.time() % 86400 + 60)
        if _limited(err):  # status 429 makes the dispatcher pause the whole target for the wait
            return Verdict(Outcome.RETRY, what, retry_after=_wait(err, response), status=429)
        if code in AUTH_CODES or ext.get("status_code") in (401, 403) or http in (401, 403):
            return Verdict(Outcome.PERMANENT, f"{what}: {self._check_token()}", status=http)
        code_status = ext.get("status_code")
        status: int = code_status if isinstance(code_status, int) else http
        if status >= 500 or status in (408, 423) or http >= 500:  # 423: board locked by a concurrent change
            return Verdict(Outcome.RETRY, what, retry_after=retry_after_secs(response), status=http)
        return Verdict(Outcome.PERMANENT, f"{what} (check board_id {self.config.board_id}, the column ids and status "
                       f"labels of target {self.target})", status=http)

    def _check_token(self) -> str:
        return (f"check auth.token of target {self.target}: the token must be valid and not revoked, and its user "
                f"must be able to write to board {self.config.board_id}")


def _ext(error: dict[str, Any]) -> dict[str, Any]:
    ext = error.get("extensions")
    return ext if isinstance(ext, dict) else {}


def _code(error: dict[str, Any]) -> str:
    return str(_ext(error).get("code") or "").lower()


def _limited(error: dict[str, Any]) -> bool:
    return _code(error) in RATE_CODES or _ext(error).get("status_code") == 429 \
        or "rate limit" in str(error.get("message")).lower()


def _wait(error: dict[str, Any], response: httpx.Response) -> float | None:
    """The longest wait monday states: retry_in_seconds, "reset in N seconds" or Retry-After."""
    ext = _ext(error)
    error_data = ext.get("error_data")
    data: dict[str, Any] = error_data if isinstance(error_data, dict) else {}
    waits = [float(w) for w in (ext.get("retry_in_seconds"), data.get("retry_in_seconds"), retry_after_secs(response))
             if isinstance(w, (int, float))]
    if found := re.search(r"reset in (\d+) seconds?", str(error.get("message"))):
        waits.append(float(found.group(1)))
    return max(waits) if waits else None


