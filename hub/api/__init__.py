"""The hub's own HTTP API under ``/api/v1`` (bearer tokens with scopes) and its OpenAPI document."""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub import __version__
from hub.api import findings, ops, sla
from hub.api.base import Api, ApiContext, Endpoint, json_response

ENDPOINTS: list[Endpoint] = [*findings.ENDPOINTS, *ops.ENDPOINTS, *sla.ENDPOINTS]
ERROR = {"type": "object", "required": ["ok", "code", "error", "errors", "status"], "properties": {
    "ok": {"const": False}, "code": {"type": "string"}, "error": {"type": "string"},
    "errors": {"type": "array", "items": {"type": "object"}}, "status": {"type": "integer"}}}
COMMON_ERRORS = {400: "Invalid request (bad parameter or body, JSON nested too deep)",
                 401: "Missing, invalid, expired or revoked token", 403: "The token lacks the scope",
                 429: "Rate limited (Retry-After)", 503: "The store cannot commit; retry"}
RATE_HEADERS = {h: {"schema": {"type": "integer"}, "description": d} for h, d in (
    ("X-RateLimit-Limit", "Requests allowed per minute for this token."),
    ("X-RateLimit-Remaining", "Requests left in the current minute."),
    ("X-RateLimit-Reset", "Epoch seconds when the minute ends."))}


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 document built from the same endpoint list the routes are built from."""
    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        op: dict[str, Any] = {
            "operationId": ep.action, "summary": ep.summary, "security": [{"bearer": []}],
            "x-scope": ep.scope, "description": f"Needs a token with the `{ep.scope}` scope (or `admin`).",
            "parameters": [{"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema,
                            "description": p.description} for p in ep.params],
            "responses": {
                **{str(code): {"description": text, "headers": RATE_HEADERS,
                               "content": {"application/json": {"schema": ep.response}}}
                   for code, text in {ep.status: "OK", **ep.also}.items()},
                **{str(code): {"description": text, "content": {"application/json": {"schema": {"$ref":
                                                                                                  "#/components/schemas/Error"}}}}
                   for code, text in sorted({**COMMON_ERRORS, **ep.errors}.items())},
            },
        }
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    finding = copy.deepcopy(findings.FINDING_SCHEMA)
    defs = finding.pop("$defs", {})
    schemas = {"Finding": finding, "Error": ERROR, **defs}
    return {"openapi": "3.1.0", "info": {"title": "Findings Hub API", "version": __version__},
            "paths": paths, "components": {"schemas": schemas,
                                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


def routes(ctx: ApiContext) -> list[Route]:
    doc = openapi()

    async def document(request: Request) -> Response:
        return json_response(200, doc)

    return [*Api(ctx, ENDPOINTS).routes(), Route("/api/v1/openapi.json", document)]
