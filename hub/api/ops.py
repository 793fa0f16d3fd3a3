"""``/api/v1`` operations: events, deliveries and replay, tokens and the audit log."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.requests import Request

from hub import tokens
from hub.api.base import ApiContext, ApiError, Endpoint, Param, Principal, query_int, read_body
from hub.ids import iso, parse_iso
from hub.store import deliveries as outbox
from hub.store import events as event_rows
from hub.store import tokens as token_rows

STATES = ["pending", "in_flight", "done", "dead"]
Scope = Literal["ingest", "read", "replay", "admin"]
assert set(get_args(Scope)) == set(tokens.SCOPES)


class Body(BaseModel):
    """A request body: strict JSON types (no "30" for 30), no unknown keys. Its JSON schema is the one the
    OpenAPI document shows, so the document cannot drift from what is checked."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReplayBody(Body):
    state: Literal["dead", "done"] = Field("dead", description="Which finished deliveries to send again.")
    target: str | None = Field(None, description="Only this target's deliveries.")
    since: str | None = Field(None, description="Only deliveries created at or after this ISO 8601 time.",
                              json_schema_extra={"format": "date-time"})


def _whole(value: Any) -> Any:
    """30.0 is the integer 30 in JSON Schema's eyes (and in some senders' encoders); 30.5 and "30" stay errors."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class TokenBody(Body):
    name: str = Field(min_length=1, max_length=100, description="Who uses the token (shown in the audit log).")
    scopes: list[Scope] = Field(min_length=1, description="What it may do; admin implies every scope.")
    expires_days: Annotated[int | None, BeforeValidator(_whole)] = Field(
        None, ge=1, le=tokens.MAX_EXPIRES_DAYS, description="Expire after this many days (default: never).")


async def events_list(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    q = request.query_params
    state = q.get("state")
    if state is not None and state not in ("pending", "waiting", "processed", "failed"):
        raise ApiError(400, "invalid_parameter", "state must be pending, waiting, processed or failed")
    rows = event_rows.listing(ctx.store.conn, source=q.get("source"), state=state,
                              limit=query_int(request, "limit", 50, 1, 500))
    return 200, {"ok": True, "data": rows}, {}


async def deliveries_list(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    q = request.query_params
    state = q.get("state")
    if state is not None and state not in STATES:
        raise ApiError(400, "invalid_parameter", f"state must be one of {', '.join(STATES)}")
    rows = outbox.listing(ctx.store.conn, state=state, target=q.get("target"),
                          limit=query_int(request, "limit", 50, 1, 500))
    return 200, {"ok": True, "data": rows}, {}


async def delivery_get(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    ident = request.path_params["delivery_id"]
    row = outbox.get(ctx.store.conn, ident)
    if row is None:
        raise ApiError(404, "not_found", f"no delivery {ident}")
    row["snapshot"] = orjson.loads(row["snapshot"]) if row["snapshot"] else None
    row.pop("payload", None)
    return 200, {"ok": True, "data": row}, {}


async def replay_one(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    ident = request.path_params["delivery_id"]
    seq = outbox.parse_id(ident)
    now = iso(ctx.clock())
    count = await ctx.store.write(lambda conn: outbox.replay(conn, [seq], now)) if seq else 0
    if not count:
        raise ApiError(409 if seq and outbox.get(ctx.store.conn, ident) else 404, "not_replayable",
                       f"{ident} does not exist or is not dead/done")
    ctx.wake_deliveries()
    return 202, {"ok": True, "replayed": 1}, {"delivery": ident}


async def replay_many(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    doc = read_body(await request.body() or b"{}", ReplayBody)
    since = doc.since
    if since is not None:
        try:
            since = iso(parse_iso(since))
        except ValueError:
            raise ApiError(400, "invalid_payload", "since must be an ISO 8601 time") from None
    total, after, now = 0, 0, iso(ctx.clock())
    while True:  # page by page, each page its own transaction
        seqs = outbox.replay_page(ctx.store.conn, state=doc.state, target=doc.target, since=since, after=after,
                                  limit=500)
        if not seqs:
            break
        total += await ctx.store.write(partial(outbox.replay, seqs=seqs, now=now))
        after = seqs[-1]
    ctx.wake_deliveries()
    return 202, {"ok": True, "replayed": total}, {"replayed": total, **doc.model_dump(exclude_none=True)}


async def tokens_list(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    return 200, {"ok": True, "data": token_rows.listing(ctx.store.conn)}, {}


async def token_create(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    doc = read_body(await request.body(), TokenBody)
    name, scopes, days = doc.name, [str(s) for s in doc.scopes], doc.expires_days
    now = ctx.clock()
    token, row = await ctx.store.write(lambda conn: tokens.issue(conn, name, scopes, now, days))
    return 201, {"ok": True, "token": token, "data": row, "warning": "store this token now: it is shown only once"}, \
        {"token_id": row["id"], "name": name, "scopes": scopes}


async def token_revoke(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    ident = request.path_params["token_id"]
    stamp = iso(ctx.clock())
    if not await ctx.store.write(lambda conn: token_rows.revoke(conn, ident, stamp)):
        raise ApiError(404, "not_found", f"no active token {ident}")
    return 200, {"ok": True, "revoked": ident}, {}


async def audit_list(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    rows = token_rows.audit_listing(ctx.store.conn, query_int(request, "limit", 100, 1, 1000))
    return 200, {"ok": True, "data": rows}, {}


LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "Rows to return.")
DELIVERY = Param("delivery_id", {"type": "string", "pattern": "^dlv_[0-9]{1,19}$"},
                 "Delivery id (dlv_ and its number).", "path")
NOT_FOUND = {404: "No such delivery"}

ENDPOINTS = [
    Endpoint("GET", "/api/v1/events", "events.list", "read", "Stored inbound events, newest first.", events_list,
             params=[Param("source", {"type": "string"}, "Source name."),
                     Param("state", {"type": "string", "enum": ["pending", "waiting", "processed", "failed"]},
                           "State."), LIMIT]),
    Endpoint("GET", "/api/v1/deliveries", "deliveries.list", "read", "Deliveries (the outbox), newest first.",
             deliveries_list, params=[Param("state", {"type": "string", "enum": STATES}, "State."),
                                      Param("target", {"type": "string"}, "Target name."), LIMIT]),
    Endpoint("GET", "/api/v1/deliveries/{delivery_id}", "deliveries.get", "read",
             "One delivery with every attempt.", delivery_get, params=[DELIVERY], errors=NOT_FOUND),
    Endpoint("POST", "/api/v1/deliveries/{delivery_id}/replay", "deliveries.replay", "replay",
             "Send a dead (or done) delivery again with the current mappings.", replay_one, params=[DELIVERY],
             status=202, errors={404: "No such delivery", 409: "The delivery is not dead or done"}),
    Endpoint("POST", "/api/v1/deliveries/replay", "deliveries.replay_bulk", "replay",
             "Replay every dead (or done) delivery, optionally of one target and since a time.", replay_many,
             body=ReplayBody.model_json_schema(), status=202),
    Endpoint("GET", "/api/v1/tokens", "tokens.list", "admin", "API tokens (never their secrets).", tokens_list),
    Endpoint("POST", "/api/v1/tokens", "tokens.create", "admin", "Create a token; the answer shows it once.",
             token_create, status=201, body=TokenBody.model_json_schema()),
    Endpoint("DELETE", "/api/v1/tokens/{token_id}", "tokens.revoke", "admin", "Revoke a token.", token_revoke,
             params=[Param("token_id", {"type": "string", "pattern": "^[0-9a-f]{10}$"}, "Token id (10 hex digits).",
                           "path")], errors={404: "No active token with this id"}),
    Endpoint("GET", "/api/v1/audit", "audit.list", "admin", "The audit log, newest first.", audit_list,
             params=[Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Rows.")]),
]
