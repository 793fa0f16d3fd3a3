"""A fake Linear GraphQL API that holds requests to Linear's real contract, and the schema it checks them with.

Every document is parsed and validated with graphql-core against Linear's published schema
(tests/data/vendor/linear/schema.graphql; linear_schema.graphql beside this file is the subset
``extract_subset`` cuts from it, which a test keeps fresh), then executed against
in-memory teams, workflow states, issues and comments. Like Linear it wants the exact
``Authorization`` form (personal key raw, OAuth token with ``Bearer``), answers bad documents 400
and bad input 200 with ``errors`` (``extensions.type`` / ``code`` as the Linear SDK reads them),
refuses an issue or comment ``id`` it already has, and sends rate-limit headers. ``script`` makes
the next requests fail like Linear does under load; ``close`` / ``webhook`` play the human in Linear.

What Linear answers for a duplicate client id, and the title/description limits, are not documented:
the messages and limits here are assumptions (docs/connectors/linear.md says so too).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import graphql
import httpx
import orjson
from graphql import GraphQLError, GraphQLSchema
from graphql.language import ast
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FULL_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "vendor" / "linear" / "schema.graphql"
SUBSET_SCHEMA = Path(__file__).with_name("linear_schema.graphql")
TEAM = "9cfb482a-81e3-4154-b5b9-2c805e70a02d"
LABEL = "5f0e3c2a-7d41-4b8e-9a6f-1c2d3e4f5a6b"
PROJECT = "0d7e5a3b-2c1f-4e8d-9b6a-5f4e3d2c1b0a"
API_KEY = "lin_api_fake0123456789abcdefghijklmnopqrstuvwxyz"
OAUTH_TOKEN = "lin_oauth_fake0123456789abcdef"
WEBHOOK_SECRET = "lin_wh_fake_secret_0123456789"
TITLE_MAX, DESCRIPTION_MAX = 255, 50_000  # assumed limits (Linear documents none)
UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
STATES = [("Backlog", "backlog"), ("Todo", "unstarted"), ("In Progress", "started"), ("Done", "completed"),
          ("Canceled", "canceled"), ("Duplicate", "duplicate")]

# The part of the schema the connector and these tests use: type -> kept fields (None: all of them).
KEEP: dict[str, tuple[str, ...] | None] = {
    "Query": ("issue", "issues", "comments", "workflowStates"),
    "Mutation": ("issueCreate", "issueUpdate", "commentCreate"),
    "Node": None,
    "Issue": ("id", "identifier", "number", "title", "description", "priority", "url", "state", "team", "labelIds",
              "dueDate", "createdAt", "updatedAt", "completedAt", "canceledAt"),
    "Team": ("id", "key", "name"),
    "WorkflowState": ("id", "name", "type", "position", "color", "team"),
    "Comment": ("id", "body", "url", "issueId", "createdAt"),
    "IssuePayload": None, "CommentPayload": None, "PageInfo": None,
    "IssueConnection": ("nodes", "pageInfo"), "CommentConnection": ("nodes", "pageInfo"),
    "WorkflowStateConnection": ("nodes", "pageInfo"),
    "IssueCreateInput": None, "IssueUpdateInput": None, "CommentCreateInput": None,
    "IssueFilter": ("id", "team", "state", "and", "or"), "CommentFilter": ("id", "and", "or"),
    "WorkflowStateFilter": ("id", "name", "type", "team", "and", "or"), "TeamFilter": ("id", "key", "and", "or"),
    "IssueIDComparator": None, "IDComparator": None, "StringComparator": None,
    "PaginationOrderBy": None, "SLADayCountType": None,
}
BUILTIN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def extract_subset(full_sdl: str) -> str:
    """The KEEP part of Linear's SDL, descriptions included; fields and optional arguments whose types are not
    kept are dropped (a required one would change the contract, so that is an error)."""
    doc = graphql.parse(full_sdl, no_location=True)
    defs = {d.name.value: d for d in doc.definitions if hasattr(d, "name") and isinstance(d, ast.TypeDefinitionNode)}
    used_scalars: set[str] = set()

    def kept(type_node: ast.TypeNode, where: str) -> bool:
        inner: Any = type_node
        while not isinstance(inner, ast.NamedTypeNode):
            inner = inner.type
        name = inner.name.value
        if name in KEEP or name in BUILTIN_SCALARS:
            return True
        if isinstance(defs.get(name), ast.ScalarTypeDefinitionNode):
            used_scalars.add(name)
            return True
        if isinstance(type_node, ast.NonNullTypeNode):
            raise TypeError(f"{where} needs {name}, which KEEP leaves out")
        return False

    out = []
    for name, wanted in KEEP.items():
        node = defs[name]
        fields = []
        for f in getattr(node, "fields", None) or ():
            if (wanted is not None and f.name.value not in wanted) or not kept(f.type, f"{name}.{f.name.value}"):
                continue
            if getattr(f, "arguments", None):
                f = replace(f, arguments=tuple(a for a in f.arguments
                                               if kept(a.type, f"{name}.{f.name.value}({a.name.value})")))
            fields.append(f)
        if getattr(node, "fields", None) is not None:
            node = replace(node, fields=tuple(fields))
        if getattr(node, "interfaces", None):
            node = replace(node, interfaces=tuple(i for i in node.interfaces if i.name.value in KEEP))
        out.append(node)
    out += [defs[s] for s in sorted(used_scalars)]
    header = ("# Subset of Linear's GraphQL schema (linear/linear packages/sdk/src/schema.graphql, see\n"
              "# tests/data/vendor/README.md), cut by tests/fakes/linear.py extract_subset(). Do not edit by hand:\n"
              "# the tests compare it with a fresh cut of the full schema.\n\n")
    return header + graphql.print_ast(ast.DocumentNode(definitions=tuple(out))) + "\n"


@functools.cache
def schema() -> GraphQLSchema:
    """Linear's full schema (built once per test run)."""
    return graphql.build_schema(FULL_SCHEMA.read_text(), assume_valid_sdl=True)


def linear_error(message: str, kind: str = "invalid input", code: str = "INPUT_ERROR") -> GraphQLError:
    """An error shaped like Linear's: ``extensions.type`` is what @linear/sdk maps to its error classes."""
    return GraphQLError(message, extensions={"type": kind, "code": code, "userError": kind == "invalid input",
                                             "userPresentableMessage": message})


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class FakeLinear:
    """State, the Starlette app (``.app``) and the resolvers of one Linear workspace."""

    def __init__(self, api_key: str = API_KEY, oauth_token: str | None = OAUTH_TOKEN):
        self.valid_auth = {api_key} | ({f"Bearer {oauth_token}"} if oauth_token else set())
        self.team = {"id": TEAM, "key": "SEC", "name": "Security"}
        self.states = {str(uuid.uuid4()): {"name": n, "type": t, "position": float(i), "color": "#bec2c8"}
                       for i, (n, t) in enumerate(STATES)}
        for sid, st in self.states.items():
            st.update(id=sid, team=self.team)
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # every request: headers, query, variables, status
        self.script: list[Any] = []  # next answers: "ratelimit", ("ratelimit", status), "lost", "lock", or a status
        self.budget = 1500
        self.app = Starlette(routes=[Route("/graphql", self.endpoint, methods=["POST"])])
        self.app.state.fake = self
        self.root: dict[str, Callable[..., Any]] = {
            "issueCreate": self.issue_create, "issueUpdate": self.issue_update, "commentCreate": self.comment_create,
            "issue": lambda info, id: self.view(self.find(id)), "issues": self.list_issues,
            "comments": self.list_comments, "workflowStates": self.list_states}

    # --- HTTP ----------------------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        entry: dict[str, Any] = {"headers": dict(request.headers), "body": body}
        self.requests.append(entry)
        response = self.answer(request, body, entry)
        entry["status"] = response.status_code
        return response

    def answer(self, request: Request, body: bytes, entry: dict[str, Any]) -> Response:
        self.budget = max(0, self.budget - 1)
        headers = {"x-ratelimit-requests-limit": "1500", "x-ratelimit-requests-remaining": str(self.budget),
                   "x-ratelimit-requests-reset": str(int(time.time() * 1000) + 60_000)}
        if request.headers.get("authorization") not in self.valid_auth:
            return self.errors([linear_error("Authentication required, not authenticated", "authentication error",
                                             "AUTHENTICATION_ERROR")], 401, headers)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return self.errors([linear_error("POST body must be application/json", "graphql error", "BAD_REQUEST")],
                               400, headers)
        step = self.script.pop(0) if self.script else None
        if step in ("ratelimit", ("ratelimit", 400)):
            status = 429 if step == "ratelimit" else 400
            return self.errors([linear_error("Rate limit exceeded", "ratelimited", "RATELIMITED")], status,
                               {**headers, **({"retry-after": "1"} if status == 429 else {}),
                                "x-ratelimit-requests-remaining": "0"})
        if step == "lock":
            return self.errors([linear_error("lock timeout", "lock timeout", "LOCK_TIMEOUT")], 200, headers)
        if isinstance(step, int):
            return JSONResponse({"error": f"scripted {step}"}, status_code=step, headers=headers)
        try:
            doc = orjson.loads(body)
            query, variables = doc["query"], doc.get("variables") or {}
            assert isinstance(query, str) and isinstance(variables, dict)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            missing = linear_error("Must provide query string.", "graphql error", "BAD_REQUEST")
            return self.errors([missing], 400, headers)
        entry.update(query=query, variables=variables)
        try:
            document = graphql.parse(query)
        except GraphQLError as exc:
            return self.errors([linear_error(exc.message, "graphql error", "GRAPHQL_PARSE_FAILED")], 400, headers)
        if invalid := graphql.validate(schema(), document):
            return self.errors([linear_error(e.message, "graphql error", "GRAPHQL_VALIDATION_FAILED") for e in invalid],
                               400, headers)
        result = graphql.execute(schema(), document, self.root, variable_values=variables,
                                 operation_name=doc.get("operationName"))
        assert isinstance(result, graphql.ExecutionResult)  # resolvers are synchronous
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [{**e.formatted, "extensions": e.extensions or linear_error(e.message).extensions}
                             for e in result.errors]
        if step == "lost":  # Linear did the work; the answer never arrives
            return JSONResponse({"error": "bad gateway"}, status_code=502, headers=headers)
        return JSONResponse(out, headers=headers)

    @staticmethod
    def errors(errors: list[GraphQLError], status: int, headers: dict[str, str]) -> JSONResponse:
        return JSONResponse({"errors": [e.formatted for e in errors]}, status_code=status, headers=headers)

    # --- resolvers -----------------------------------------------------------------------------------

    def issue_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        if input["teamId"] != TEAM:
            raise linear_error("Could not find referenced Team.")
        if not input.get("title") and not input.get("templateId"):
            raise linear_error("title must be specified unless a template is used")
        issue_id = input.get("id") or str(uuid.uuid4())
        if not UUID_V4.match(issue_id):
            raise linear_error("id must be a UUID (version 4)")
        if issue_id in self.issues:
            raise linear_error("Entity already exists: an issue with this id exists already")  # wording assumed
        self.check_fields(input)
        number = len(self.issues) + 1
        stamp = now_iso()
        issue = {"id": issue_id, "number": number, "identifier": f"SEC-{number}", "labelIds": [],
                 "url": f"https://linear.app/acme/issue/SEC-{number}", "stateId": self.state_of("backlog")["id"],
                 "createdAt": stamp, "updatedAt": stamp, "priority": 0, "description": None, "dueDate": None}
        issue.update({k: v for k, v in input.items() if k not in ("id", "teamId")})
        self.issues[issue_id] = issue
        return {"success": True, "issue": self.view(issue), "lastSyncId": float(number)}

    def issue_update(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        issue = self.find(id)
        self.check_fields(input)
        issue.update(input, updatedAt=now_iso())
        return {"success": True, "issue": self.view(issue), "lastSyncId": 1.0}

    def comment_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        if not input.get("issueId"):
            raise linear_error("issueId must be specified")
        issue = self.find(input["issueId"])
        if not (input.get("body") or "").strip():
            raise linear_error("body must be specified")
        cid = input.get("id") or str(uuid.uuid4())
        if not UUID_V4.match(cid):
            raise linear_error("id must be a UUID (version 4)")
        if cid in self.comments:
            raise linear_error("Entity already exists: a comment with this id exists already")
        self.comments[cid] = {"id": cid, "issueId": issue["id"], "body": input["body"], "createdAt": now_iso(),
                              "url": f"{issue['url']}#comment-{cid[:8]}"}
        return {"success": True, "comment": self.comments[cid], "lastSyncId": 1.0}

    def check_fields(self, input: dict[str, Any]) -> None:
        if "stateId" in input and input["stateId"] not in self.states:
            raise linear_error("Could not find referenced WorkflowState.")
        if not 0 <= input.get("priority", 0) <= 4:
            raise linear_error("priority must not be less than 0 and not be greater than 4")
        if any(label != LABEL for label in input.get("labelIds") or []):
            raise linear_error("Could not find referenced IssueLabel.")
        if input.get("projectId") not in (None, PROJECT):
            raise linear_error("Could not find referenced Project.")
        if len(input.get("title") or "") > TITLE_MAX:
            raise linear_error(f"title must be shorter than or equal to {TITLE_MAX} characters")
        if len(input.get("description") or "") > DESCRIPTION_MAX:
            raise linear_error(f"description must be shorter than or equal to {DESCRIPTION_MAX} characters")
        if input.get("dueDate") is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(input["dueDate"])):
            raise linear_error("dueDate must be a TimelessDate (YYYY-MM-DD)")

    def list_issues(self, info: Any, filter: dict[str, Any] | None = None, first: int = 50, **_: Any) -> dict[str, Any]:
        wanted = self.ids(filter, "issues")
        return self.page([self.view(i) for i in self.issues.values() if wanted is None or i["id"] in wanted], first)

    def list_comments(self, info: Any, filter: dict[str, Any] | None = None, first: int = 50, **_: Any
                      ) -> dict[str, Any]:
        wanted = self.ids(filter, "comments")
        return self.page([c for c in self.comments.values() if wanted is None or c["id"] in wanted], first)

    def list_states(self, info: Any, filter: dict[str, Any] | None = None, first: int = 50, **_: Any) -> dict[str, Any]:
        filter = dict(filter or {})
        team = filter.pop("team", {}).get("id", {}).get("eq", TEAM)
        kind = filter.pop("type", {}).get("eq")
        if filter:
            raise AssertionError(f"the fake does not filter workflowStates by {sorted(filter)}")
        return self.page([s for s in self.states.values() if team == TEAM and kind in (None, s["type"])], first)

    @staticmethod
    def ids(filter: dict[str, Any] | None, what: str) -> set[str] | None:
        if not filter:
            return None
        if set(filter) != {"id"} or not set(filter["id"]) <= {"eq", "in"}:
            raise AssertionError(f"the fake only filters {what} by id eq/in, not {filter}")
        cmp = filter["id"]
        return set(cmp.get("in") or []) | ({cmp["eq"]} if cmp.get("eq") else set())

    @staticmethod
    def page(nodes: list[dict[str, Any]], first: int | None) -> dict[str, Any]:
        if first is not None and not 0 < first <= 250:
            raise linear_error("first must be between 1 and 250")
        return {"nodes": nodes[: first or 50], "pageInfo": {"hasNextPage": len(nodes) > (first or 50),
                                                            "hasPreviousPage": False, "startCursor": None,
                                                            "endCursor": None}}

    # --- state helpers -------------------------------------------------------------------------------

    def find(self, id_or_identifier: str) -> dict[str, Any]:
        for issue in self.issues.values():
            if id_or_identifier in (issue["id"], issue["identifier"]):
                return issue
        raise linear_error("Entity not found: Issue")

    def state_of(self, kind: str) -> dict[str, Any]:
        return next(s for s in self.states.values() if s["type"] == kind)

    def view(self, issue: dict[str, Any]) -> dict[str, Any]:
        """An issue as GraphQL resolves it (state and team as objects)."""
        state = self.states[issue["stateId"]]
        done = {"completedAt": issue["updatedAt"] if state["type"] == "completed" else None,
                "canceledAt": issue["updatedAt"] if state["type"] == "canceled" else None}
        return {**issue, **done, "state": state, "team": self.team}

    def close(self, id_or_identifier: str, kind: str = "completed") -> dict[str, Any]:
        """A human moves the issue to the team's first state of this type (completed, canceled, started...)."""
        issue = self.find(id_or_identifier)
        issue.update(stateId=self.state_of(kind)["id"], updatedAt=now_iso())
        return self.view(issue)

    def webhook(self, issue_id: str, secret: str = WEBHOOK_SECRET, timestamp_ms: int | None = None
                ) -> tuple[bytes, dict[str, str]]:
        """The ``Issue`` ``update`` webhook Linear sends for this issue now, and its signed headers."""
        issue = self.view(self.find(issue_id))
        data = {k: issue[k] for k in ("id", "identifier", "number", "title", "priority", "url", "createdAt",
                                      "updatedAt", "labelIds", "stateId")}
        data["state"] = {k: issue["state"][k] for k in ("id", "name", "type", "color")}
        data["teamId"] = TEAM
        body = orjson.dumps({"action": "update", "type": "Issue", "createdAt": issue["updatedAt"], "data": data,
                             "updatedFrom": {"stateId": "previous", "updatedAt": issue["createdAt"]},
                             "url": issue["url"], "organizationId": str(uuid.uuid4()), "webhookId": str(uuid.uuid4()),
                             "webhookTimestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)})
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"content-type": "application/json", "linear-signature": signature, "linear-event": "Issue",
                      "linear-delivery": str(uuid.uuid4())}


class LoseAnswer(httpx.AsyncBaseTransport):
    """Passes requests to the fake; the next ``times`` answers to mutations are lost after Linear acted on them."""

    def __init__(self, app: Any, times: int = 1):
        self.inner = httpx.ASGITransport(app=app)
        self.times = times

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.times > 0 and b"mutation" in request.content:
            self.times -= 1
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response
