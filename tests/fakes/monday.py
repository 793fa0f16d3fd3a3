"""A fake monday.com platform API (``POST /v2``) that checks what the real one checks, and keeps items.

Every GraphQL document is parsed, validated and executed with graphql-core against the real 2026-10
schema (tests/data/vendor/monday/schema.graphql; tests/fakes/monday_schema.graphql is a subset the tests
hold to it), so a misspelt field, a wrong argument type or a missing variable fails as it
would at monday. On top: ``Authorization: <token>`` exactly (no prefix) else HTTP 401; ``API-Version``
pinned (the fake insists; monday itself would fall back to the current version); ``column_values`` must
be a JSON-encoded *string*, its column ids must exist on the board, values must have the shape of their
column type, status labels must exist unless ``create_labels_if_missing``; long text holds 2,000
characters; application errors answer HTTP 200 with ``errors[].extensions.code/status_code``.

Knobs on ``app.state.monday`` (a ``MondayState``): ``budget`` (calls per ``window_secs``; past it the
answer is 200 + ``COMPLEXITY_BUDGET_EXHAUSTED`` with ``retry_in_seconds`` and ``Retry-After``),
``set_status``/``archive``/``delete`` (a human at work), ``overlaps`` (mutations that arrived while another
was running on the same board: monday asks clients not to do that). ``Flaky`` in front of the app scripts
lost answers, transport 429s and daily-limit errors per root field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import graphql
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FULL_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "vendor" / "monday" / "schema.graphql"
SUBSET_SCHEMA = Path(__file__).with_name("monday_schema.graphql")
VERSION = "2026-10"
LONG_TEXT_MAX = 2000
NAME_MAX = 255  # item names (unconfirmed; monday's UI stops there)


@lru_cache(maxsize=2)
def schema(full: bool = True) -> graphql.GraphQLSchema:
    """The full 2026-10 schema, or the subset this repo carries beside the fake."""
    return graphql.build_schema((FULL_SCHEMA if full else SUBSET_SCHEMA).read_text())


def fail(code: str, message: str, status: int = 400, **data: Any) -> graphql.GraphQLError:
    return graphql.GraphQLError(message, extensions={"code": code, "status_code": status, "error_data": data})


@dataclass
class Board:
    id: str = "1234567890"
    columns: dict[str, str] = field(default_factory=lambda: {
        "name": "name", "status": "status", "priority": "status", "text": "text", "long_text": "long_text",
        "link": "link", "date4": "date", "person": "people"})
    labels: dict[str, dict[int, str]] = field(default_factory=lambda: {
        "status": {0: "Working on it", 1: "Done", 2: "Stuck", 3: "Accepted risk", 5: ""},
        "priority": {0: "Critical", 1: "High", 2: "Medium", 3: "Low"}})
    done: dict[str, set[str]] = field(default_factory=lambda: {"status": {"Done", "Accepted risk"}})  # is_done
    groups: tuple[str, ...] = ("topics", "new_group")


@dataclass
class MondayState:
    token: str
    boards: dict[str, Board]
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (root field, variables) accepted
    rejected: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (root field, errors)
    budget: int | None = None  # calls per window before COMPLEXITY_BUDGET_EXHAUSTED
    window_secs: float = 1.0
    overlaps: int = 0
    _window: tuple[float, int] = (0.0, 0)
    _busy: set[str] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(9_000_000_001))

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def set_status(self, item_id: str, label: str) -> None:
        """A human moves the item to another status."""
        self.items[item_id]["values"]["status"] = label

    def archive(self, item_id: str) -> None:
        self.items[item_id]["state"] = "archived"

    def delete(self, item_id: str) -> None:
        self.items[item_id]["state"] = "deleted"

    def find(self, finding_id: str, column: str = "text") -> list[dict[str, Any]]:
        return [i for i in self.items.values() if i["values"].get(column) == finding_id]

    def spend(self) -> float | None:
        """Seconds until the budget resets when this call is over it, else None."""
        if self.budget is None:
            return None
        now = time.monotonic()
        start, used = self._window
        if now - start >= self.window_secs:
            start, used = now, 0
        self._window = (start, used + 1)
        return None if used < self.budget else max(0.0, start + self.window_secs - now)


def _value(board: Board, column: str, value: Any, add_labels: bool) -> Any:
    """A column value checked against its column type, in the form the fake stores."""
    ctype = board.columns.get(column)
    if ctype is None:
        raise fail("InvalidColumnIdException", "This column ID doesn't exist for the board", column_id=column)
    if ctype == "name":
        if not isinstance(value, str) or not 0 < len(value) <= NAME_MAX:
            raise fail("ColumnValueException", f"item name must be 1-{NAME_MAX} characters", column_id=column)
        return value
    if ctype == "status":
        label = value if isinstance(value, str) else value.get("label") if isinstance(value, dict) else None
        index = value.get("index") if isinstance(value, dict) else None
        known = board.labels[column]
        if label is None and index in known:
            return known[index]
        if not isinstance(label, str):
            raise fail("ColumnValueException", "status values are {\"label\": ...} or {\"index\": ...}",
                       column_id=column)
        if label not in known.values():
            if not add_labels:
                raise fail("ColumnValueException", "This status label doesn't exist, possible statuses are: "
                           + json.dumps({str(k): v for k, v in known.items()}), column_id=column, label=label)
            known[max(known) + 1] = label
        return label
    if ctype == "text":
        if not isinstance(value, str):
            raise fail("ColumnValueException", "text columns take a string", column_id=column)
        return value
    if ctype == "long_text":
        text = value.get("text") if isinstance(value, dict) else value
        if not isinstance(text, str):
            raise fail("ColumnValueException", "long text values are {\"text\": ...}", column_id=column)
        if len(text) > LONG_TEXT_MAX:
            raise fail("ColumnValueException", f"long text is limited to {LONG_TEXT_MAX} characters",
                       column_id=column, length=len(text))
        return text
    if ctype == "link":
        if not isinstance(value, dict) or not str(value.get("url", "")).startswith(("http://", "https://")):
            raise fail("ColumnValueException", "link values are {\"url\": \"https://...\", \"text\": ...}",
                       column_id=column)
        return {"url": value["url"], "text": str(value.get("text") or value["url"])}
    if ctype == "date":
        day = value.get("date") if isinstance(value, dict) else value
        try:
            dt.date.fromisoformat(str(day))
        except ValueError:
            raise fail("ColumnValueException", "date values are {\"date\": \"YYYY-MM-DD\"}", column_id=column) from None
        return day
    raise fail("ColumnValueException", f"this fake does not write {ctype} columns", column_id=column)


def _columns(state: MondayState, board: Board, raw: Any, add_labels: bool) -> dict[str, Any]:
    if not isinstance(raw, str):  # the JSON scalar is a JSON-*encoded string*, not an object
        raise fail("InvalidArgumentException", "column_values must be a JSON-encoded string, got "
                   + type(raw).__name__, argument="column_values")
    try:
        cols = json.loads(raw)
    except json.JSONDecodeError:
        raise fail("JsonParseException", "Syntax error in JSON input", json=raw[:200]) from None
    if not isinstance(cols, dict):
        raise fail("JsonParseException", "column_values must encode an object", json=raw[:200])
    return {k: _value(board, k, v, bool(add_labels)) for k, v in cols.items()}


def _column_value(board: Board, item: dict[str, Any], column: str) -> dict[str, Any]:
    ctype, value = board.columns[column], item["values"].get(column)
    base = {"id": column, "type": ctype, "is_leaf": True, "text": value if isinstance(value, str) else None,
            "value": None if value is None else json.dumps(value)}
    if ctype == "status":
        index = next((i for i, lbl in board.labels[column].items() if lbl == value), None)
        return {**base, "__typename": "StatusValue", "label": value, "index": index,
                "is_done": value in board.done.get(column, set()), "value": json.dumps({"index": index})}
    if ctype == "link":
        return {**base, "__typename": "LinkValue", "url": value and value["url"], "url_text": value and value["text"],
                "text": value and f"{value['text']} - {value['url']}"}
    if ctype == "date":
        return {**base, "__typename": "DateValue", "date": value, "time": None, "icon": None}
    return {**base, "__typename": {"long_text": "LongTextValue"}.get(ctype, "TextValue")}


def _view(state: MondayState, item: dict[str, Any]) -> dict[str, Any]:
    board = state.boards[item["board"]]

    def column_values(info: Any, ids: list[str] | None = None, **_: Any) -> list[dict[str, Any]]:
        wanted = [c for c in board.columns if c != "name" and (ids is None or c in ids)]
        return [_column_value(board, item, c) for c in wanted]

    return {"id": item["id"], "name": item["values"]["name"], "state": item["state"], "url": item["url"],
            "created_at": item["created"], "updated_at": item["created"], "column_values": column_values}


def _root(state: MondayState) -> dict[str, Any]:
    def board_of(board_id: str) -> Board:
        if board_id not in state.boards:
            raise fail("InvalidBoardIdException", "Board not found", 404, board_id=board_id)
        return state.boards[board_id]

    def item_of(board: Board | None, item_id: str | None) -> dict[str, Any]:
        item = state.items.get(str(item_id))
        if item is None or item["state"] == "deleted" or (board is not None and item["board"] != board.id):
            raise fail("InvalidItemIdException", "Item not found in board", 404, item_id=item_id)
        return item

    def create_item(info: Any, board_id: str, item_name: str, group_id: str | None = None,
                    column_values: Any = None, create_labels_if_missing: bool | None = None, **_: Any) -> Any:
        board = board_of(board_id)
        if group_id is not None and group_id not in board.groups:
            raise fail("InvalidGroupIdException", "Group not found", 404, group_id=group_id)
        values = _columns(state, board, column_values, bool(create_labels_if_missing)) if column_values else {}
        values["name"] = _value(board, "name", item_name, False)
        item_id = str(next(state._ids))
        item = {"id": item_id, "board": board.id, "group": group_id or board.groups[0], "values": values,
                "state": "active", "created": dt.date.today().isoformat(),
                "url": f"https://fake-account.monday.com/boards/{board.id}/pulses/{item_id}"}
        state.items[item_id] = item
        return _view(state, item)

    def change_multiple_column_values(info: Any, board_id: str, column_values: Any, item_id: str | None = None,
                                      create_labels_if_missing: bool | None = None) -> Any:
        board = board_of(board_id)
        item = item_of(board, item_id)
        item["values"].update(_columns(state, board, column_values, bool(create_labels_if_missing)))
        return _view(state, item)

    def create_update(info: Any, body: str, item_id: str | None = None, **_: Any) -> Any:
        item = item_of(None, item_id)
        if not body.strip():
            raise fail("InvalidArgumentException", "update body must not be empty", argument="body")
        update = {"id": str(next(state._ids)), "body": body, "item_id": item["id"], "text_body": body,
                  "created_at": dt.date.today().isoformat(), "creator_id": "42"}
        state.updates.append(update)
        return update

    def items(info: Any, ids: list[str] | None = None, limit: int = 25, page: int = 1, **_: Any) -> Any:
        if ids is not None and len(ids) > 100:
            raise fail("InvalidArgumentException", "at most 100 item ids per query", argument="ids")
        found = [state.items[i] for i in (ids or list(state.items)) if i in state.items]
        return [_view(state, i) for i in found[(page - 1) * limit: page * limit]]

    def items_page_by_column_values(info: Any, board_id: str, limit: int = 25,
                                    columns: list[dict[str, Any]] | None = None, **_: Any) -> Any:
        board = board_of(board_id)
        if not 1 <= limit <= 500:
            raise fail("InvalidArgumentException", "limit must be 1-500", argument="limit")
        matches = [i for i in state.items.values() if i["board"] == board.id and i["state"] == "active"]
        for rule in columns or []:
            if rule["column_id"] not in board.columns:
                raise fail("InvalidColumnIdException", "This column ID doesn't exist for the board",
                           column_id=rule["column_id"])
            matches = [i for i in matches if i["values"].get(rule["column_id"]) in rule["column_values"]]
        return {"cursor": None, "items": [_view(state, i) for i in matches[:limit]]}

    def complexity(info: Any) -> dict[str, int]:
        return {"before": 10_000_000, "after": 9_999_000, "query": 1000, "reset_in_x_seconds": 60}

    return {"create_item": create_item, "change_multiple_column_values": change_multiple_column_values,
            "create_update": create_update, "items": items, "complexity": complexity,
            "items_page_by_column_values": items_page_by_column_values}


def _errors(*errors: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": list(errors), "extensions": {"request_id": "fake-request"}}, status_code=status,
                        headers=headers)


def fake_monday(token: str = "monday-test-token", boards: list[Board] | None = None, full_schema: bool = True
                ) -> Starlette:
    state = MondayState(token, {b.id: b for b in boards or [Board()]})
    gql = schema(full_schema)
    root = _root(state)

    async def v2(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != token:  # the token itself, no "Bearer "
            return _errors({"message": "Not Authenticated", "extensions": {"code": "UNAUTHENTICATED",
                                                                           "status_code": 401}}, status=401)
        if request.headers.get("api-version") != VERSION:
            return _errors({"message": f"API-Version must be {VERSION} (this fake insists on a pinned version)",
                            "extensions": {"code": "InvalidVersionException", "status_code": 400}}, status=400)
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) \
                or not isinstance(body.get("variables", {}), dict):
            return _errors({"message": "No query string was present", "extensions": {"code": "BadRequest",
                                                                                     "status_code": 400}}, status=400)
        try:
            document = graphql.parse(body["query"])
        except graphql.GraphQLError as exc:
            return _errors({**exc.formatted, "extensions": {"code": "ParseError", "status_code": 400}})
        if problems := graphql.validate(gql, document):
            return _errors(*[{**e.formatted, "extensions": {"code": "GraphQLValidationFailed", "status_code": 400}}
                             for e in problems])
        if (wait := state.spend()) is not None:
            seconds = max(1, math.ceil(wait))
            return _errors({"message": "Complexity budget exhausted", "extensions": {
                "code": "COMPLEXITY_BUDGET_EXHAUSTED", "complexity": 1000, "complexity_budget_left": 0,
                "complexity_budget_limit": state.budget, "retry_in_seconds": seconds, "status_code": 429}},
                headers={"retry-after": str(seconds)})
        op = graphql.get_operation_ast(document, body.get("operationName"))
        field_name = op.selection_set.selections[0].name.value if op else "?"  # type: ignore[attr-defined]
        board = str((body.get("variables") or {}).get("board", ""))
        mutation = op is not None and op.operation is graphql.OperationType.MUTATION
        if mutation:
            state.overlaps += board in state._busy
            state._busy.add(board)
        try:
            await asyncio.sleep(0)  # let a concurrent request show itself
            result = graphql.execute(gql, document, root_value=root, variable_values=body.get("variables"),
                                     operation_name=body.get("operationName"))
        finally:
            if mutation:
                state._busy.discard(board)
        assert not isinstance(result, asyncio.Future)
        out: dict[str, Any] = {"data": result.data, "extensions": {"request_id": "fake-request"}}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
            state.rejected.append((field_name, out["errors"]))
        else:
            state.calls.append((field_name, body.get("variables") or {}))
        return JSONResponse(out)

    app = Starlette(routes=[Route("/v2", v2, methods=["POST"])])
    app.state.monday = state
    return app


def complexity_error(seconds: int) -> tuple[int, dict[str, str], dict[str, Any]]:
    return 200, {"retry-after": str(seconds)}, {"errors": [{"message": "Complexity budget exhausted", "extensions": {
        "code": "COMPLEXITY_BUDGET_EXHAUSTED", "retry_in_seconds": seconds, "status_code": 429}}]}


def daily_limit_error() -> tuple[int, dict[str, str], dict[str, Any]]:
    return 200, {}, {"errors": [{"message": "Daily limit exceeded", "extensions": {
        "code": "DAILY_LIMIT_EXCEEDED", "status_code": 429}}]}


def transport_429(seconds: int) -> tuple[int, dict[str, str], dict[str, Any]]:
    return 429, {"retry-after": str(seconds)}, {"error_message": "Rate Limit Exceeded.", "status_code": 429}


class Flaky(httpx.AsyncBaseTransport):
    """Scripted trouble per root field (``create_item``, ``items``...), in order, then the app answers.

    Steps: "lost" (the app handles the request, then the connection drops: httpx.ReadError), "lost502"
    (handled, then answered 502), or ``(status, headers, json)`` answered without reaching the app.
    """

    def __init__(self, app: Starlette, script: dict[str, list[Any]] | None = None):
        self.inner = httpx.ASGITransport(app=app)
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        try:
            op = graphql.get_operation_ast(graphql.parse(json.loads(request.content)["query"]))
            name = op.selection_set.selections[0].name.value if op else "?"  # type: ignore[attr-defined]
        except (ValueError, KeyError, graphql.GraphQLError):
            name = "?"
        self.seen.append(name)
        steps = self.script.get(name) or []
        step = steps.pop(0) if steps else "ok"
        if isinstance(step, tuple):
            status, headers, doc = step
            return httpx.Response(status, headers=headers, json=doc)
        response = await self.inner.handle_async_request(request)
        if step == "lost":
            await response.aread()
            raise httpx.ReadError("connection dropped after the request was handled", request=request)
        if step == "lost502":
            await response.aread()
            return httpx.Response(502, text="<html>502 Bad Gateway</html>")
        return response
