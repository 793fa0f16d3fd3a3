"""A Notion API double that checks what the real API checks (Bearer token, Notion-Version, property names and
types against the data source schema, status options, text/array/block/URL size limits) and answers with
Notion's error shape and realistic page objects; plus a transport that fails the ways the network does."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "ntn_4242424242abcdefFAKEfakeFAKEfake0123456789"
VERSION = "2026-03-11"
DATA_SOURCE = "2f1e5b8c-7a44-4c1e-9f0a-5d2b8e6c1a90"
DATABASE = "248104cd-477e-80af-bc30-000bd28de8f9"
BLOCK_TYPES = {"paragraph", "heading_1", "heading_2", "heading_3", "bulleted_list_item", "numbered_list_item",
               "quote", "callout", "to_do", "toggle", "divider"}


def default_schema() -> dict[str, dict[str, Any]]:
    """The database a security team would set up: Status with the three groups Notion always has."""
    opts = [("s1", "Not started", "default"), ("s2", "In progress", "blue"), ("s3", "Done", "green"),
            ("s4", "Won't fix", "gray")]
    return {
        "Name": {"id": "title", "name": "Name", "type": "title", "title": {}},
        "Severity": {"id": "Sev%3D", "name": "Severity", "type": "select", "select": {"options": [
            {"id": f"o{i}", "name": n, "color": "red", "description": None}
            for i, n in enumerate(["Critical", "High", "Medium", "Low", "Info"])]}},
        "Status": {"id": "St%3F", "name": "Status", "type": "status", "status": {
            "options": [{"id": i, "name": n, "color": c, "description": None} for i, n, c in opts],
            "groups": [{"id": "g1", "name": "To-do", "color": "gray", "option_ids": ["s1"]},
                       {"id": "g2", "name": "In progress", "color": "blue", "option_ids": ["s2"]},
                       {"id": "g3", "name": "Complete", "color": "green", "option_ids": ["s3", "s4"]}]}},
        "Finding ID": {"id": "Fi%40d", "name": "Finding ID", "type": "rich_text", "rich_text": {}},
        "Reference": {"id": "Re%5Bf", "name": "Reference", "type": "url", "url": {}},
        "SLA due": {"id": "Sl%5Da", "name": "SLA due", "type": "date", "date": {}},
    }


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "validation_error"):
        super().__init__(message)
        self.status, self.code = status, code


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"object": "error", "status": status, "code": code, "message": message,
                         "request_id": str(uuid.uuid4())}, status_code=status, headers=headers)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class NotionState:
    token: str = TOKEN
    version: str = VERSION
    schema: dict[str, dict[str, Any]] = field(default_factory=default_schema)
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # page id -> body blocks
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every authorized request
    page_limit: int = 100  # results per query page (lower it to test cursors)
    shared: bool = True  # False: the database is not shared with the integration (404 object_not_found)

    def prop(self, key: str) -> dict[str, Any]:
        for name, spec in self.schema.items():
            if key in (name, spec["id"]):
                return spec
        raise Invalid(f"{key} is not a property that exists.")

    def human_sets_status(self, page_id: str, name: str) -> None:
        """Someone moves the page in Notion's UI."""
        option = self._status_option(name)
        self.pages[page_id]["properties"]["Status"]["status"] = {k: option[k] for k in ("id", "name", "color")}

    def _status_option(self, name: str) -> dict[str, Any]:
        spec = next(s for s in self.schema.values() if s["type"] == "status")
        for option in spec["status"]["options"]:
            if option["name"] == name:
                return option
        raise Invalid(f'Invalid status option. Status option "{name}" does not exist.')

    def value(self, page: dict[str, Any], name: str) -> Any:
        prop = page["properties"][name]
        return prop[prop["type"]]


def _rich(items: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise Invalid(f"body failed validation: {where} should be an array, instead was `{type(items).__name__}`.")
    if len(items) > 100:
        raise Invalid(f"body failed validation: {where}.length should be ≤ `100`, instead was `{len(items)}`.")
    out = []
    for i, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else None
        if not isinstance(text, dict) or item.get("type", "text") != "text" or not isinstance(text.get("content"), str):
            raise Invalid(f"body failed validation: {where}[{i}].text should be defined, instead was `undefined`.")
        if len(text["content"]) > 2000:
            raise Invalid(f"body failed validation: {where}[{i}].text.content.length should be ≤ `2000`, "
                          f"instead was `{len(text['content'])}`.")
        link = text.get("link")
        if link is not None and (not isinstance(link, dict) or len(str(link.get("url", ""))) > 2000):
            raise Invalid(f"body failed validation: {where}[{i}].text.link.url.length should be ≤ `2000`.")
        out.append({"type": "text", "text": {"content": text["content"], "link": link},
                    "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                                    "code": False, "color": "default"},
                    "plain_text": text["content"], "href": link["url"] if link else None})
    return out


def _property(state: NotionState, key: str, value: Any) -> tuple[str, Any]:
    spec = state.prop(key)
    kind, name = spec["type"], spec["name"]
    if not isinstance(value, dict) or kind not in value:
        raise Invalid(f"{name} is expected to be {kind}.")
    v = value[kind]
    where = f"body.properties.{name}.{kind}"
    if kind in ("title", "rich_text"):
        return name, _rich(v, where)
    if kind == "select":
        if v is None:
            return name, None
        if not isinstance(v, dict) or not isinstance(v.get("name"), str) or len(v["name"]) > 100 or "," in v["name"]:
            raise Invalid(f"body failed validation: {where}.name should be a string without commas, ≤ 100 characters.")
        options = spec["select"]["options"]
        if not any(o["name"] == v["name"] for o in options):  # Notion adds a new select option
            options.append({"id": uuid.uuid4().hex[:4], "name": v["name"], "color": "default", "description": None})
        option = next(o for o in options if o["name"] == v["name"])
        return name, {k: option[k] for k in ("id", "name", "color")}
    if kind == "status":
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            raise Invalid(f"body failed validation: {where}.name should be defined.")
        option = state._status_option(v["name"])
        return name, {k: option[k] for k in ("id", "name", "color")}
    if kind == "url":
        if v is not None and (not isinstance(v, str) or len(v) > 2000):
            raise Invalid(f"body failed validation: {where}.length should be ≤ `2000`, instead was `{len(str(v))}`.")
        return name, v
    if kind == "date":
        if v is None:
            return name, None
        try:
            dt.datetime.fromisoformat(str(v["start"]))
        except (KeyError, TypeError, ValueError):
            raise Invalid(f"body failed validation: {where}.start should be a valid ISO 8601 date string.") from None
        return name, {"start": v["start"], "end": v.get("end"), "time_zone": None}
    raise Invalid(f"{name} cannot be written by this fake ({kind}).")


def _properties(state: NotionState, props: Any) -> dict[str, Any]:
    if not isinstance(props, dict):
        raise Invalid("body failed validation: body.properties should be an object.")
    return dict(_property(state, k, v) for k, v in props.items())


def _children(children: Any) -> list[dict[str, Any]]:
    if not isinstance(children, list):
        raise Invalid("body failed validation: body.children should be an array.")
    if len(children) > 100:
        raise Invalid(f"body failed validation: body.children.length should be ≤ `100`, instead was `{len(children)}`.")
    out = []
    for i, b in enumerate(children):
        kind = b.get("type") if isinstance(b, dict) else None
        if kind not in BLOCK_TYPES or not isinstance(b.get(kind), dict) or b.get("object", "block") != "block":
            raise Invalid(f"body failed validation: body.children[{i}] is not a supported block ({kind}).")
        body = {"rich_text": _rich(b[kind].get("rich_text"), f"body.children[{i}].{kind}.rich_text")} \
            if kind != "divider" else {}
        out.append({"object": "block", "id": str(uuid.uuid4()), "type": kind, kind: body})
    return out


def _matches(state: NotionState, page: dict[str, Any], flt: dict[str, Any], depth: int = 0) -> bool:
    for compound in ("or", "and"):
        if compound in flt:
            parts = flt[compound]
            if depth >= 2 or not isinstance(parts, list) or len(parts) > 100:
                raise Invalid(f"body failed validation: body.filter.{compound} should be an array of ≤ 100 filters "
                              "nested at most two levels deep.")
            results = [_matches(state, page, p, depth + 1) for p in parts]
            return any(results) if compound == "or" else all(results)
    spec = state.prop(str(flt.get("property")))
    kind = spec["type"]
    if kind not in flt:
        raise Invalid(f"body failed validation: filter on {spec['name']} should use the `{kind}` condition.")
    cond, value = flt[kind], state.value(page, spec["name"])
    if kind in ("title", "rich_text"):
        text = "".join(t["plain_text"] for t in value)
        return text == cond["equals"] if "equals" in cond else cond.get("contains", "\0") in text
    if kind in ("status", "select"):
        return (value or {}).get("name") == cond.get("equals")
    raise Invalid(f"filtering on {kind} is not supported by this fake")


def notion_app(state: NotionState | None = None) -> Starlette:
    state = state or NotionState()

    def page_object(page_id: str, props: dict[str, Any], created: str | None = None) -> dict[str, Any]:
        stamp = now()
        full = {}
        for name, spec in state.schema.items():
            kind = spec["type"]
            default: Any = [] if kind in ("title", "rich_text") else None
            if kind == "status":
                first = spec["status"]["groups"][0]["option_ids"][0]
                option = next(o for o in spec["status"]["options"] if o["id"] == first)
                default = {k: option[k] for k in ("id", "name", "color")}
            full[name] = {"id": spec["id"], "type": kind, kind: props.get(name, default)}
        title = "".join(t["plain_text"] for t in full["Name"]["title"]) if "Name" in full else ""
        slug = "-".join(title.split()[:6])[:60].replace("/", "")
        return {"object": "page", "id": page_id, "created_time": created or stamp, "last_edited_time": stamp,
                "created_by": {"object": "user", "id": "bot-1"}, "last_edited_by": {"object": "user", "id": "bot-1"},
                "cover": None, "icon": None, "in_trash": False, "is_locked": False,
                "parent": {"type": "data_source_id", "data_source_id": DATA_SOURCE, "database_id": DATABASE},
                "properties": full, "url": f"https://www.notion.so/{slug}-{page_id.replace('-', '')}",
                "public_url": None}

    async def handle(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {state.token}":
            return error(401, "unauthorized", "API token is invalid.")
        version = request.headers.get("notion-version")
        if not version:
            return error(400, "missing_version", "Notion-Version header failed validation: Notion-Version header "
                                                 "should be defined, instead was `undefined`.")
        if version != state.version:
            return error(400, "validation_error", f"Notion-Version {version} is not the version this fake serves "
                                                  f"({state.version}).")
        body: Any = {}
        if request.method in ("POST", "PATCH"):
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return error(400, "invalid_request", "Content-Type should be application/json.")
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                return error(400, "invalid_json", "Error parsing JSON body.")
            if not isinstance(body, dict):
                return error(400, "validation_error", "body failed validation: body should be an object.")
            if "archived" in body and state.version >= "2026-03-11":
                return error(400, "validation_error",
                             "body failed validation: `archived` is `in_trash` since 2026-03-11.")
        state.requests.append((request.method, request.url.path))
        try:
            return route(request.method, request.url.path.removeprefix("/v1/").split("/"), body)
        except Invalid as exc:
            return error(exc.status, exc.code, str(exc))

    def not_found(kind: str, object_id: str) -> Invalid:
        return Invalid(f"Could not find {kind} with ID: {object_id}. Make sure the relevant pages and databases are "
                       "shared with your integration.", 404, "object_not_found")

    def route(method: str, parts: list[str], body: dict[str, Any]) -> Response:
        match method, parts:
            case "POST", ["pages"]:
                parent = body.get("parent") or {}
                ds = parent.get("data_source_id")
                if parent.get("type", "data_source_id") != "data_source_id" or not ds:
                    raise Invalid("body failed validation: body.parent.data_source_id should be defined.")
                if ds != DATA_SOURCE or not state.shared:
                    raise not_found("data_source", ds)
                props = _properties(state, body.get("properties"))
                blocks = _children(body.get("children", []))
                page_id = str(uuid.uuid4())
                state.pages[page_id] = page_object(page_id, props)
                state.blocks[page_id] = blocks
                return JSONResponse(state.pages[page_id])
            case ("GET" | "PATCH") as m, ["pages", page_id]:
                if page_id not in state.pages or not state.shared:
                    raise not_found("page", page_id)
                page = state.pages[page_id]
                if m == "PATCH":
                    props = _properties(state, body.get("properties", {}))
                    for name, value in props.items():
                        page["properties"][name][page["properties"][name]["type"]] = value
                    if "in_trash" in body:
                        page["in_trash"] = bool(body["in_trash"])
                    page["last_edited_time"] = now()
                return JSONResponse(page)
            case "PATCH", ["blocks", page_id, "children"]:
                if page_id not in state.blocks:
                    raise not_found("block", page_id)
                added = _children(body.get("children"))
                state.blocks[page_id] += added
                return JSONResponse({"object": "list", "results": added, "next_cursor": None, "has_more": False,
                                     "type": "block", "block": {}})
            case "POST", ["comments"]:
                page_id = (body.get("parent") or {}).get("page_id")
                if page_id not in state.pages:
                    raise not_found("page", str(page_id))
                comment = {"object": "comment", "id": str(uuid.uuid4()), "discussion_id": str(uuid.uuid4()),
                           "parent": {"type": "page_id", "page_id": page_id}, "created_time": now(),
                           "rich_text": _rich(body.get("rich_text"), "body.rich_text")}
                state.comments.append(comment)
                return JSONResponse(comment)
            case "GET", ["data_sources", ds]:
                if ds != DATA_SOURCE or not state.shared:
                    raise not_found("data_source", ds)
                return JSONResponse({"object": "data_source", "id": DATA_SOURCE, "title": [],
                                     "parent": {"type": "database_id", "database_id": DATABASE},
                                     "properties": state.schema})
            case "GET", ["databases", db]:
                if db != DATABASE or not state.shared:
                    raise not_found("database", db)
                return JSONResponse({"object": "database", "id": DATABASE,
                                     "data_sources": [{"id": DATA_SOURCE, "name": "Findings"}]})
            case "POST", ["data_sources", ds, "query"]:
                if ds != DATA_SOURCE or not state.shared:
                    raise not_found("data_source", ds)
                return JSONResponse(query(body))
        raise Invalid(f"Invalid request URL: {method} /v1/{'/'.join(parts)}", 400, "invalid_request_url")

    def query(body: dict[str, Any]) -> dict[str, Any]:
        size = body.get("page_size", 100)
        if not isinstance(size, int) or not 1 <= size <= 100:
            raise Invalid(f"body failed validation: body.page_size should be ≤ `100`, instead was `{size}`.")
        flt = body.get("filter")
        hits = [p for p in state.pages.values() if p["in_trash"] == bool(body.get("in_trash", False))
                and (flt is None or _matches(state, p, flt))]
        start = int(body.get("start_cursor") or 0)
        end = start + min(size, state.page_limit)
        more = end < len(hits)
        return {"object": "list", "results": hits[start:end], "next_cursor": str(end) if more else None,
                "has_more": more, "type": "page_or_data_source", "page_or_data_source": {}}

    app = Starlette(routes=[Route("/v1/{path:path}", handle, methods=["GET", "POST", "PATCH", "DELETE"])])
    app.state.notion = state
    return app


class Flaky(httpx.AsyncBaseTransport):
    """Steps per request: "ok"; "lost" (Notion does the work, then the connection drops); "lost-502" (done, but a
    proxy answers 502); (status, code) or (status, code, headers) for a Notion error answered instead."""

    def __init__(self, app: Starlette, script: Iterable[Any] = (), default: Any = "ok"):
        self.inner = httpx.ASGITransport(app=app)
        self.script, self.default, self.calls = list(script), default, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.script.pop(0) if self.script else self.default
        if step == "ok":
            return await self.inner.handle_async_request(request)
        if step in ("lost", "lost-502"):
            response = await self.inner.handle_async_request(request)
            await response.aread()
            if step == "lost":
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body",
                                                request=request)
            return httpx.Response(502, text="<html><body>502 Bad Gateway</body></html>",
                                  headers={"content-type": "text/html"})
        status, code, *rest = step
        body = {"object": "error", "status": status, "code": code, "message": f"scripted {code}",
                "request_id": str(uuid.uuid4())}
        return httpx.Response(status, json=body, headers=rest[0] if rest else {})
