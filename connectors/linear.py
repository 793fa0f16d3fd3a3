"""``linear``: one Linear issue per finding through the GraphQL API, kept current, closed when fixed.

Vendor API: Linear GraphQL, ``POST {url}/graphql`` (default ``https://api.linear.app``); schema and
docs at https://linear.app/developers/graphql. The mutation text lives here; what the issue says
lives in hub/builtin_mappings/linear/. A new issue gets a client-chosen ``id`` derived from the target and the
finding id, so a retried create cannot make a second issue: when Linear refuses an id it already
has, the issue is read back and adopted. Comments get derived ids the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, SecretStr

from hub.connector import Item, Outbound, Outcome, Ref, RemoteStatus, TargetConfig, Verdict
from hub.connector.config import SyncConfig
from hub.connector.http import HttpConnector, classify_status, json_object, retry_after_secs, short_body
from hub.errors import HubError
from hub.ids import parse_uint
from hub.strict import Loc, StrictModel

NAMESPACE = uuid.UUID("3b0c6a52-5d1e-4f0a-9c51-6a8e0f4d2b17")  # never change: issue ids derive from it
CLOSED = frozenset({"completed", "canceled"})  # WorkflowState.type values that mean "closed"
STEP_STATE = {"finding.resolved": "completed", "finding.reopened": "unstarted"}
ISSUE = "issue { id identifier url state { name type } }"
CREATE = f"mutation($input: IssueCreateInput!) {{ issueCreate(input: $input) {{ success {ISSUE} }} }}"
UPDATE = "mutation($id: String!, $input: IssueUpdateInput!) " \
         f"{{ issueUpdate(id: $id, input: $input) {{ success {ISSUE} }} }}"
COMMENT = "mutation($input: CommentCreateInput!) { commentCreate(input: $input) { success comment { id } } }"
ISSUES = "query($ids: [ID!]!, $first: Int!) { issues(filter: {id: {in: $ids}}, first: $first) " \
         "{ nodes { id identifier url state { name type } } } }"
COMMENTS = "query($ids: [ID!]!) { comments(filter: {id: {in: $ids}}, first: 1) { nodes { id } } }"
STATES = "query($team: ID!, $type: String!) { workflowStates(filter: {team: {id: {eq: $team}}, type: {eq: $type}}, " \
         "first: 50) { nodes { id name type position } } }"


class LinearError(HubError):
    """Linear answered a status read with an error (the sync job logs it and tries again next run)."""


class LinearAuth(StrictModel):
    api_key: SecretStr | None = Field(None, description="Personal API key (lin_api_...): `Authorization: <key>`.")
    oauth_token: SecretStr | None = Field(None, description="OAuth access token: `Authorization: Bearer <token>`.")

    def problems(self) -> Iterator[tuple[Loc, str]]:
        if (self.api_key is None) == (self.oauth_token is None):
            yield (), "set exactly one of api_key (personal API key) or oauth_token (OAuth access token)"


class LinearConfig(TargetConfig):
    auth: LinearAuth = Field(description="Credentials: a personal API key or an OAuth access token.")
    team_id: str = Field(min_length=1, description="Team (UUID) the issues are created in.")
    label_ids: list[str] = Field(default_factory=list, description="Labels (UUIDs) every new issue gets.")
    project_id: str | None = Field(None, description="Project (UUID) new issues are added to.")
    resolved_state_id: str | None = Field(None, description="State for fixed findings; default: the team's first "
                                                             "state of type completed (looked up once).")
    open_state_id: str | None = Field(None, description="State for reopened findings; default: the team's first "
                                                         "state of type unstarted (looked up once).")
    description_max_chars: int = Field(50_000, ge=1000, description="Issue descriptions and comments are cut to this "
                                                                     "length (Linear publishes no limit).")
    sync: SyncConfig = Field(default_factory=SyncConfig, description="How often issue states are read back.")


def client_id(*parts: str) -> str:
    """A stable id for a client-created object: UUIDv5 name hashing, marked version 4 as Linear's schema asks."""
    return str(uuid.UUID(bytes=uuid.uuid5(NAMESPACE, ":".join(parts)).bytes, version=4))


class LinearConnector(HttpConnector[LinearConfig]):
    """Linear GraphQL API: issueCreate / issueUpdate / commentCreate, issue states read back for sync."""

    name: ClassVar[str] = "linear"
    Config = LinearConfig
    default_url = "https://api.linear.app"
    default_rate_limit = 1500 / 3600  # documented personal-key budget: 1,500 requests an hour
    payloads = ("issue", "update", "comment")
    work_items = True
    kinds = frozenset({"finding.created", "finding.updated", "finding.resolved", "finding.reopened",
                       "finding.sla_breached"})
    status_batch = 50

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self._states = {t: s for t, s in (("completed", cfg.resolved_state_id), ("unstarted", cfg.open_state_id)) if s}

    # --- requests ------------------------------------------------------------------------------------

    def request(self, query: str, variables: dict[str, Any], op: str, **meta: Any) -> Outbound:
        """One GraphQL POST; ``op`` names the root field whose answer matters."""
        auth = self.config.auth
        key = auth.api_key.get_secret_value() if auth.api_key else \
            "Bearer " + (auth.oauth_token.get_secret_value() if auth.oauth_token else "")
        body = orjson.dumps({"query": query, "variables": variables})
        return Outbound("POST", f"{self.base_url}/graphql", {"content-type": "application/json", "authorization": key},
                        body, frozenset({"authorization"}), {"op": op, **meta})

    def render(self, item: Item) -> list[Outbound]:
        """The exact requests; a state lookup comes first when the state id is neither configured nor cached."""
        state_type = STEP_STATE.get(item.kind)
        if state_type is None or state_type in self._states:
            return self.plan(item, self._states.get(state_type or ""))
        pending = f"<id of the team's first {state_type} state, from the lookup above>"
        return [self._state_lookup(state_type), *self.plan(item, pending)]

    def plan(self, item: Item, state_id: str | None) -> list[Outbound]:
        """Create (unless linked), then the lifecycle step: field/state update and a comment."""
        ctx, linked = self.context(item), item.linked_id
        issue_id = linked or client_id(self.target, (item.finding or {}).get("id", ""))
        out = [] if linked else [self.request(CREATE, {"input": {**self.mapping.render_json("issue", ctx),
                                                                 "id": issue_id}}, "issueCreate", adopt=issue_id)]
        if item.kind == "finding.created":
            return out
        updates = linked is not None and self.mapping.applies("update", item.kind)
        changes = self.mapping.render_json("update", ctx) if updates else {}
        if state_id:
            changes["stateId"] = state_id
        if changes:
            out.append(self.request(UPDATE, {"id": issue_id, "input": changes}, "issueUpdate"))
        if self.mapping.applies("comment", item.kind) and (text := self.mapping.render_text("comment", ctx).strip()):
            cid = client_id(self.target, item.idempotency_key, "comment")
            out.append(self.request(COMMENT, {"input": {"id": cid, "issueId": issue_id, "body": text}}, "commentCreate",
                                    adopt=cid))
        return out

    def _state_lookup(self, state_type: str) -> Outbound:
        return self.request(STATES, {"team": self.config.team_id, "type": state_type}, "workflowStates")

    # --- delivering ----------------------------------------------------------------------------------

    async def deliver(self, client: httpx.AsyncClient, item: Item) -> Verdict:
        state_id = None
        if (state_type := STEP_STATE.get(item.kind)) is not None:
            state_id, failed = await self._state_id(client, state_type)
            if failed is not None:
                return failed
        ref, done = item.ref, []
        linked = ref is not None and ref.state == "linked"
        link: dict[str, Any] = {"remote_id": ref.remote_id, "remote_url": ref.url} if ref and linked else {}
        for out in self.plan(item, state_id):
            verdict, answer = await self._call(client, out)
            if verdict.outcome is not Outcome.OK:
                return verdict
            done.append(verdict.reason)
            if issue := (answer or {}).get("issue"):
                link = {"remote_id": issue["id"], "remote_url": issue.get("url"),
                        "remote_status": (issue.get("state") or {}).get("name")}
        return Verdict(Outcome.OK, "; ".join(done) or "nothing to change", status=200, **link)

    async def _call(self, client: httpx.AsyncClient, out: Outbound) -> tuple[Verdict, dict[str, Any] | None]:
        response = await self.send(client, out)
        verdict = self.classify(response)
        op = out.meta["op"]
        if verdict.outcome is Outcome.OK:
            data = json_object(response).get("data")  # not a GraphQL answer (a proxy, a wrong url): {}
            answer = data.get(op) if isinstance(data, dict) else None
            if not isinstance(answer, dict) or answer.get("success") is False:
                return Verdict(Outcome.PERMANENT, f"{op} did not succeed: {short_body(response)}", status=200), None
            issue = answer.get("issue") or {}
            return Verdict(Outcome.OK, f"{op} {issue.get('identifier', '')}".strip(), status=verdict.status), answer
        if verdict.outcome is Outcome.PERMANENT and (adopt := out.meta.get("adopt")) and not is_auth(response):
            # Linear refuses an id it already has: the create went through on an earlier attempt.
            query, kind = (ISSUES, "issue") if op == "issueCreate" else (COMMENTS, "comment")
            found, nodes = await self._call(client, self.request(query, {"ids": [adopt], "first": 1}, op=f"{kind}s"))
            if found.outcome is not Outcome.OK:
                return found, None
            if nodes and nodes.get("nodes"):
                return Verdict(Outcome.OK, f"{op}: adopted {adopt}"), {kind: nodes["nodes"][0]}
        return Verdict(verdict.outcome, f"{op}: {verdict.reason}", retry_after=verdict.retry_after,
                       status=verdict.status), None

    async def _state_id(self, client: httpx.AsyncClient, state_type: str) -> tuple[str | None, Verdict | None]:
        if state_type in self._states:
            return self._states[state_type], None
        verdict, answer = await self._call(client, self._state_lookup(state_type))
        if verdict.outcome is not Outcome.OK:
            return None, verdict
        nodes = sorted((answer or {}).get("nodes") or [], key=lambda n: n.get("position", 0))
        if not nodes:
            key = "resolved_state_id" if state_type == "completed" else "open_state_id"
            return None, Verdict(Outcome.PERMANENT, f"team {self.config.team_id} has no workflow state of type "
                                                    f"{state_type}: check team_id or set {key}")
        self._states[state_type] = nodes[0]["id"]
        return nodes[0]["id"], None

    def classify(self, response: httpx.Response) -> Verdict:
        """HTTP status first, then GraphQL ``errors`` (which Linear may send with 200 or 400)."""
        code = response.status_code
        kind, message = graphql_error(response)
        if code == 429 or "ratelimited" in kind:
            # status 429 whatever the HTTP code: the dispatcher pauses the whole target (the budget is per user).
            return Verdict(Outcome.RETRY, f"rate limited by Linear (HTTP {code}) {message}".strip(),
                           retry_after=retry_after_secs(response) or _reset_secs(response), status=429)
        if is_auth(response):
            which = "API key (auth.api_key" if self.config.auth.api_key else "OAuth token (auth.oauth_token"
            return Verdict(Outcome.PERMANENT, f"HTTP {code}: {message or 'not authenticated'}: check the Linear "
                           f"{which} of target {self.target}) and that it may write to team {self.config.team_id}",
                           status=code)
        if not kind and not message:
            return classify_status(response)
        retry = code >= 500 or any(w in kind for w in ("lock timeout", "internal error", "network error"))
        return Verdict(Outcome.RETRY if retry else Outcome.PERMANENT,
                       f"HTTP {code}: {message or 'GraphQL error'} ({kind})",
                       retry_after=retry_after_secs(response) if retry else None, status=code)

    # --- status sync ---------------------------------------------------------------------------------

    async def read_status(self, client: httpx.AsyncClient, refs: Sequence[Ref]) -> list[RemoteStatus]:
        """States of up to ``status_batch`` linked issues in one query; closed = state type completed/canceled."""
        ids = [r.remote_id for r in refs if r.remote_id]
        if not ids:
            return []
        verdict, answer = await self._call(client, self.request(ISSUES, {"ids": ids, "first": len(ids)}, "issues"))
        if verdict.outcome is not Outcome.OK:
            raise LinearError(verdict.reason)
        out = []
        for node in (answer or {}).get("nodes") or []:
            state = node.get("state") or {}
            closed = state.get("type") in CLOSED
            out.append(RemoteStatus(node["id"], str(state.get("name", "")), closed, node.get("url")))
        return out


def graphql_error(response: httpx.Response) -> tuple[str, str]:
    """(``extensions.type`` or ``code`` lower-cased, message) of the first GraphQL error; ("", "") when none."""
    errors = json_object(response).get("errors")
    first: dict[str, Any] = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    extensions = first.get("extensions")
    ext: dict[str, Any] = extensions if isinstance(extensions, dict) else {}
    kind = str(ext.get("type") or ext.get("code") or ("error" if first else "")).lower().replace("_", " ")
    return kind, str(ext.get("userPresentableMessage") or first.get("message") or "")[:300]


def is_auth(response: httpx.Response) -> bool:
    """401/403, or an authentication/forbidden GraphQL error whatever the status."""
    kind = graphql_error(response)[0]
    return response.status_code in (401, 403) or "authentication" in kind or "forbidden" in kind


def _reset_secs(response: httpx.Response) -> float | None:
    """Seconds until the request budget refills (``X-RateLimit-Requests-Reset`` is epoch milliseconds)."""
    reset = parse_uint(response.headers.get("x-ratelimit-requests-reset", ""))
    return min(3600.0, max(0.0, reset / 1000 - time.time())) if reset is not None else None
