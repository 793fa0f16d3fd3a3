"""Fakes of the seed platforms' write endpoints the hub's write-back calls, held to their API documents.

SecureEndpoint (seed 001, docs/connectors/secureendpoint.md): ``POST /v1/findings/{id}/dismiss`` "dismiss a
finding with a reason", ``Authorization: Bearer``, errors ``{"code", "message"}`` (400 bad_request, 401
unauthorized, 404 not_found, 429 rate_limited, 500 server_error) and ``X-RateLimit-*`` headers on every answer.
The body's field name is not documented; the fake wants ``{"reason": "<text>"}``, as the connector sends.

NEURO (seed 003, docs/connectors/neuro.md): ``PUT /api/v1/findings/{id}`` with ``Authorization: Bearer`` and
``Content-Type: application/json``, answers ``{"success": true, "data": finding}`` or ``{"success": false,
"error": {"code", "message"}}`` (INVALID_TOKEN 401, VALIDATION_ERROR 400, NOT_FOUND 404, RATE_LIMIT_EXCEEDED 429).

``script`` answers the next requests with a forced status (503, 400, ...) before serving normally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

NEURO_STATUSES = ("Open", "Confirmed", "Remediated", "Fixed", "Closed", "False Positive", "Accepted Risk")


@dataclass
class Platform:
    token: str
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the platform's record
    script: list[int] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)  # method, path, body
    app: Starlette = field(init=False)

    def forced(self) -> int | None:
        return self.script.pop(0) if self.script else None


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None


def secureendpoint(token: str = "se_live_test", *ids: str) -> Platform:
    """SecureEndpoint with these findings open."""
    p = Platform(token, {i: {"id": i, "status": "open"} for i in ids})
    limits = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": str(int(time.time()) + 60)}

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message}, status_code=status, headers=limits)

    async def dismiss(request: Request) -> JSONResponse:
        body = await _json(request)
        p.requests.append((request.method, request.url.path, body))
        if request.headers.get("authorization") != f"Bearer {p.token}":
            return error(401, "unauthorized", "Missing or invalid API key")
        if (status := p.forced()) is not None:
            return error(status, {400: "bad_request", 429: "rate_limited"}.get(status, "server_error"), "forced")
        record = p.findings.get(request.path_params["id"])
        if record is None:
            return error(404, "not_found", "Resource does not exist")
        if not isinstance(body, dict) or not isinstance(body.get("reason"), str) or not body["reason"].strip():
            return error(400, "bad_request", "reason is required")
        record.update(status="dismissed", dismiss_reason=body["reason"])
        return JSONResponse(record, headers=limits)

    p.app = Starlette(routes=[Route("/v1/findings/{id}/dismiss", dismiss, methods=["POST"])])
    return p


def neuro(token: str = "neuro-token", *ids: str) -> Platform:
    """NEURO with these findings Open."""
    p = Platform(token, {i: {"id": i, "title": f"finding {i}", "status": "Open"} for i in ids})

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"success": False, "error": {"code": code, "message": message}}, status_code=status)

    async def update(request: Request) -> JSONResponse:
        body = await _json(request)
        p.requests.append((request.method, request.url.path, body))
        if request.headers.get("authorization") != f"Bearer {p.token}":
            return error(401, "INVALID_TOKEN", "Authentication failed")
        if (status := p.forced()) is not None:
            return error(status, {400: "VALIDATION_ERROR", 429: "RATE_LIMIT_EXCEEDED"}.get(status, "SERVER_ERROR"),
                         "forced")
        if request.headers.get("content-type") != "application/json" or not isinstance(body, dict):
            return error(400, "VALIDATION_ERROR", "JSON body required")
        record = p.findings.get(request.path_params["id"])
        if record is None:
            return error(404, "NOT_FOUND", "Resource doesn't exist")
        if "status" in body and body["status"] not in NEURO_STATUSES:
            return error(400, "VALIDATION_ERROR", "Invalid field value")
        record.update(body)
        return JSONResponse({"success": True, "data": record})

    p.app = Starlette(routes=[Route("/api/v1/findings/{id}", update, methods=["PUT"])])
    return p
