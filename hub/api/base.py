"""What every ``/api/v1`` endpoint shares: bearer-token auth with scopes, a per-token rate limit,
an audit row per call, the one error shape, and the description the OpenAPI document is built from.

401 for a missing, malformed, unknown, expired or revoked token; 403 for a scope the token lacks;
429 with Retry-After past the token's limit. Every answer carries X-RateLimit-Limit, -Remaining and
-Reset once the token is known.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import jsonlimits, tokens
from hub.api.anonymous import AnonymousLimiter
from hub.config import ApiConfig
from hub.errors import StoreUnavailableError, error_json, format_path
from hub.ids import iso, parse_uint
from hub.metrics import Metrics
from hub.store import Store
from hub.store import tokens as token_rows

M = TypeVar("M", bound=BaseModel)
REFUSED = {"invalid_token": "the token is not valid", "token_revoked": "the token was revoked",
           "token_expired": "the token has expired"}  # tokens.check's reasons, as the API and the console say them


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.headers = status, code, message, errors, headers or {}


@dataclass(frozen=True)
class ApiContext:
    """What the API's handlers use of the running hub."""

    store: Store
    config: ApiConfig
    metrics: Metrics
    clock: Callable[[], float]
    on_stored: Callable[[], None]  # findings were stored as an event: the pipeline processes it now
    wake_deliveries: Callable[[], None]  # deliveries were put back to pending: the workers claim them now


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    scopes: list[str]

    @property
    def actor(self) -> str:
        return f"token:{self.name} ({self.token_id})"


@dataclass
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    where: str = "query"


@dataclass
class Endpoint:
    method: str
    path: str
    action: str  # audit action, e.g. findings.list
    scope: str
    summary: str
    handler: Callable[[ApiContext, Request, Principal], Awaitable[tuple[int, Any, dict[str, Any]]]]
    params: list[Param] = field(default_factory=list)
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200
    errors: dict[int, str] = field(default_factory=dict)  # its own error answers, beside those every endpoint has
    also: dict[int, str] = field(default_factory=dict)  # other success answers, with the same ``response`` schema


class RateLimiter:
    """A fixed one-minute window per token: simple, and the Reset header means what it says."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time):
        self.limit, self.clock = per_minute, clock
        self.windows: dict[str, tuple[int, int]] = {}

    def hit(self, key: str) -> tuple[bool, dict[str, str]]:
        now = self.clock()
        window = int(now // 60)
        start, count = self.windows.get(key, (window, 0))
        if start != window:
            start, count = window, 0
        allowed = count < self.limit
        if allowed:
            count += 1
        self.windows[key] = (start, count)
        reset = (start + 1) * 60
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(max(0, self.limit - count)),
                   "X-RateLimit-Reset": str(reset)}
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
        return allowed, headers


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


class Api:
    def __init__(self, ctx: ApiContext, endpoints: list[Endpoint]):
        self.ctx = ctx
        self.endpoints = endpoints
        self.limiter = RateLimiter(ctx.config.rate_limit_per_min, ctx.clock)
        self.anonymous = AnonymousLimiter(ctx.clock)
        self._last_used: dict[str, float] = {}

    def routes(self) -> list[Route]:
        return [Route(ep.path, self._wrap(ep), methods=[ep.method]) for ep in self.endpoints]

    def _wrap(self, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        known = {p.name for p in ep.params if p.where == "query"}

        async def call(request: Request) -> Response:
            headers: dict[str, str] = {}
            actor, result = "anonymous", "error"
            detail: dict[str, Any] = {}
            try:
                try:
                    principal = self.authenticate(request)
                except ApiError as exc:
                    if (limited := self._anonymous_flood(request, exc)) is not None:
                        return limited  # not audited: past the address's budget, a metric counts them instead
                    raise
                actor = principal.actor
                allowed, headers = self.limiter.hit(principal.token_id)
                if not allowed:
                    raise ApiError(429, "rate_limited", f"more than {self.limiter.limit} requests this minute",
                                   headers=headers)
                if not tokens.allows(principal.scopes, ep.scope):
                    raise ApiError(403, "forbidden", f"this token lacks the {ep.scope!r} scope")
                unknown = set(request.query_params) - known
                if unknown:  # a misspelt filter must not quietly list everything
                    raise ApiError(400, "invalid_parameter", f"unknown parameter(s): {', '.join(sorted(unknown))}")
                status, data, detail = await ep.handler(self.ctx, request, principal)
                await self._touch(principal)
                response = json_response(status, data, headers)
                result = str(status)
            except ApiError as exc:
                headers = {**headers, **exc.headers}
                response = Response(error_json(exc.status, exc.code, exc.message, exc.errors), status_code=exc.status,
                                    media_type="application/json", headers=headers)
                result = f"{exc.status} {exc.code}"
                detail = {"error": exc.message}
            except StoreUnavailableError as exc:
                response = Response(error_json(503, "unavailable", str(exc)), status_code=503,
                                    media_type="application/json", headers={**headers, "Retry-After": "5"})
                result = "503 unavailable"
            await self._audit(actor, ep, request, result, detail)
            return response

        return call

    def _anonymous_flood(self, request: Request, exc: ApiError) -> Response | None:
        """The 429 for a failed authentication past its address's budget (hub/api/anonymous.py), else None."""
        wait = self.anonymous.spend(request.client.host if request.client else "-")
        if not wait:
            return None
        self.ctx.metrics.anonymous_limited.inc()
        message = "too many requests without a valid token from this address; retry later"
        return Response(error_json(429, "rate_limited", message), status_code=429, media_type="application/json",
                        headers={**exc.headers, "Retry-After": AnonymousLimiter.retry_after(wait)})

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            raise ApiError(401, "unauthorized",
                           "send Authorization: Bearer <token> (create one with `hub tokens create`)",
                           headers={"WWW-Authenticate": "Bearer"})
        given = value.strip() if scheme.lower() == "bearer" else ""
        row, refused = tokens.check(self.ctx.store.conn, given, self.ctx.clock())
        if row is None:
            raise ApiError(401, refused, REFUSED[refused], headers={"WWW-Authenticate": "Bearer"})
        return Principal(row["id"], row["name"], row["scopes"])

    async def _touch(self, principal: Principal) -> None:
        """last_used_at, written at most once a minute per token (not a write per request)."""
        now = self.ctx.clock()
        if now - self._last_used.get(principal.token_id, 0) >= 60:
            self._last_used[principal.token_id] = now
            stamp = iso(now)
            await self.ctx.store.write(lambda conn: token_rows.touch(conn, principal.token_id, stamp))

    async def _audit(self, actor: str, ep: Endpoint, request: Request, result: str, detail: dict[str, Any]) -> None:
        client = request.client.host if request.client else None
        target = "/".join(str(v) for v in request.path_params.values()) or None
        stamp = iso(self.ctx.clock())
        # the answer already says 503 when it matters; auditing must not turn a 200 into an error
        with contextlib.suppress(StoreUnavailableError):
            await self.ctx.store.write(lambda conn: token_rows.audit(conn, stamp, actor, ep.action, target, result,
                                                                     detail, client))


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high] (ASCII digits only), ``default`` when absent; 400 otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = parse_uint(raw, high)
    if value is None or value < low:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {low} to {high}")
    return value


def parse_json(body: bytes) -> Any:
    """A request body as JSON: 400 ``invalid_json`` when it is not, 400 ``too_deep`` past the one nesting limit
    (hub/jsonlimits.py: what the hub stores it must be able to encode again)."""
    try:
        return jsonlimits.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    except jsonlimits.TooDeepError as exc:
        raise ApiError(400, "too_deep", f"body is not accepted: {exc}") from None


def read_body(body: bytes, model: type[M]) -> M:
    """A JSON body checked against ``model`` (strict types, no unknown keys): 400 ``invalid_payload`` with one
    entry per problem, so a wrong type or an out-of-range number is the sender's error, never a 500."""
    doc = parse_json(body)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        errors = [{"code": "invalid_payload", "path": format_path(err["loc"]) or "(body)", "message": err["msg"]}
                  for err in exc.errors(include_input=False, include_url=False)]
        summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
        raise ApiError(400, "invalid_payload", f"the body does not match the schema: {summary}", errors) from None
