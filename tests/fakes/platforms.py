"""Fakes of the seed platforms' list APIs (the platforms' published API documents; docs/adapters.md): pagination, rate-limit headers, errors."""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def secureendpoint(token: str = "se_live_test") -> Starlette:
    """GET /v1/findings?page=&per_page= -> {data, meta: {total, page, per_page}} with X-RateLimit-* headers.

    ``app.state.findings`` is the inventory; ``app.state.script`` answers the next requests with an error
    status (429 with Retry-After, 500) before serving normally; ``app.state.requests`` records query params.
    """
    state: dict[str, Any] = {"findings": [], "script": [], "requests": [], "remaining": 60}

    async def findings(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"code": "unauthorized", "message": "Missing or invalid API key"}, status_code=401)
        state["requests"].append(dict(request.query_params))
        step = state["script"].pop(0) if state["script"] else None
        if step is not None:
            status, headers = step if isinstance(step, tuple) else (step, {})
            return JSONResponse({"code": "rate_limited" if status == 429 else "server_error", "message": "x"},
                                status_code=status, headers=headers)
        page = int(request.query_params.get("page", 1))
        per_page = min(int(request.query_params.get("per_page", 25)), 100)
        rows = state["findings"]
        if since := request.query_params.get("updated_since"):
            rows = [r for r in rows if r.get("updated_at", "") >= since]
        state["remaining"] = max(0, state["remaining"] - 1)
        headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": str(state["remaining"]),
                   "X-RateLimit-Reset": str(int(time.time()) + 60)}
        return JSONResponse({"data": rows[(page - 1) * per_page: page * per_page],
                             "meta": {"total": len(rows), "page": page, "per_page": per_page}}, headers=headers)

    app = Starlette(routes=[Route("/v1/findings", findings)])
    app.state.s = state
    return app


def neuro(token: str = "neuro-token") -> Starlette:
    """GET /api/v1/findings?page=&limit= (max 100) -> {success, data, meta: {page, limit, total, pages}}."""
    state: dict[str, Any] = {"findings": [], "requests": []}

    async def findings(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"success": False, "error": {"code": "INVALID_TOKEN", "message": "x"}}, status_code=401)
        state["requests"].append(dict(request.query_params))
        page, limit = int(request.query_params.get("page", 1)), int(request.query_params.get("limit", 50))
        if limit > 100:
            return JSONResponse({"success": False, "error": {"code": "VALIDATION_ERROR", "message": "limit <= 100"}},
                                status_code=400)
        rows = state["findings"]
        return JSONResponse({"success": True, "data": rows[(page - 1) * limit: page * limit],
                             "meta": {"page": page, "limit": limit, "total": len(rows),
                                      "pages": max(1, -(-len(rows) // limit))}})

    app = Starlette(routes=[Route("/api/v1/findings", findings)])
    app.state.s = state
    return app


def secuprobe(token: str = "sp_live_test") -> Starlette:
    """GET /api/v1/scans, /api/v1/scans/{id}, /api/v1/scans/{id}/vulnerabilities (seed 004 shapes)."""
    state: dict[str, Any] = {"scans": {}, "vulns": {}, "requests": []}

    def auth(request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        state["requests"].append(request.url.path)
        return None

    async def scans(request: Request) -> JSONResponse:
        return auth(request) or JSONResponse({"scans": [{"scanId": s["scanId"], "url": s["url"]}
                                                        for s in state["scans"].values()]})

    async def scan(request: Request) -> JSONResponse:
        return auth(request) or JSONResponse(state["scans"][request.path_params["scan_id"]])

    async def vulns(request: Request) -> JSONResponse:
        found = state["vulns"][request.path_params["scan_id"]]
        return auth(request) or JSONResponse({"total": len(found), "vulnerabilities": found})

    app = Starlette(routes=[Route("/api/v1/scans", scans), Route("/api/v1/scans/{scan_id}", scan),
                            Route("/api/v1/scans/{scan_id}/vulnerabilities", vulns)])
    app.state.s = state
    return app
