"""Fakes of the seed platforms' list APIs (the platforms' published API documents; docs/adapters.md): pagination,
rate-limit headers, errors."""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def se_finding(i: int, **kw: Any) -> dict[str, Any]:
    """An item of SecureEndpoint's GET /v1/findings (and the body of GET /v1/findings/{id}), as its document shows."""
    return {"id": f"fnd_{i:04d}", "cve": f"CVE-2024-{21000 + i}", "severity": "critical", "cvss_score": 9.8,
            "affected_assets": 3, "software": f"OpenSSL 1.0.{i}", "eol_date": "2020-01-01", "status": "open",
            "ticket_id": None, "updated_at": "2026-11-01T00:00:00Z", **kw}


def secureendpoint(token: str = "se_live_test") -> Starlette:
    """GET /v1/findings?page=&per_page= -> {data, meta: {total, page, per_page}} with X-RateLimit-* headers;
    GET /v1/findings/{id} -> {data: finding}; GET /v1/findings/{id}/assets -> {data: [asset], meta} (paged).

    ``app.state.findings`` is the inventory (``assets``: finding id -> its assets); ``app.state.script`` answers the
    next requests with an error status (429 with Retry-After, 500) before serving normally; ``down`` answers 503 to
    everything; ``requests`` records the list's query params, ``paths`` every path asked for, ``auth`` every
    Authorization header. Errors are ``{code, message}``; an unknown finding is 404 ``not_found``.
    """
    state: dict[str, Any] = {"findings": [], "assets": {}, "script": [], "requests": [], "paths": [], "auth": [],
                             "remaining": 60, "down": False}

    def gate(request: Request, listing: bool = False) -> JSONResponse | None:
        state["paths"].append(request.url.path)
        state["auth"].append(request.headers.get("authorization"))
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"code": "unauthorized", "message": "Missing or invalid API key"}, status_code=401)
        if listing:
            state["requests"].append(dict(request.query_params))
        if state["down"]:
            return JSONResponse({"code": "server_error", "message": "Something went wrong on our end"},
                                status_code=503)
        step = state["script"].pop(0) if state["script"] else None
        if step is not None:
            status, headers = step if isinstance(step, tuple) else (step, {})
            return JSONResponse({"code": "rate_limited" if status == 429 else "server_error", "message": "x"},
                                status_code=status, headers=headers)
        return None

    def limits() -> dict[str, str]:
        state["remaining"] = max(0, state["remaining"] - 1)
        return {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": str(state["remaining"]),
                "X-RateLimit-Reset": str(int(time.time()) + 60)}

    def paged(request: Request, rows: list[Any]) -> JSONResponse:
        page = int(request.query_params.get("page", 1))
        per_page = min(int(request.query_params.get("per_page", 25)), 100)
        return JSONResponse({"data": rows[(page - 1) * per_page: page * per_page],
                             "meta": {"total": len(rows), "page": page, "per_page": per_page}}, headers=limits())

    def known(request: Request) -> dict[str, Any] | None:
        return next((f for f in state["findings"] if f["id"] == request.path_params["id"]), None)

    async def findings(request: Request) -> JSONResponse:
        if refused := gate(request, listing=True):
            return refused
        rows = state["findings"]
        if since := request.query_params.get("updated_since"):
            rows = [r for r in rows if r.get("updated_at", "") >= since]
        return paged(request, rows)

    async def finding(request: Request) -> JSONResponse:
        if refused := gate(request):
            return refused
        if (found := known(request)) is None:
            return JSONResponse({"code": "not_found", "message": "Resource does not exist"}, status_code=404)
        return JSONResponse({"data": found}, headers=limits())

    async def assets(request: Request) -> JSONResponse:
        if refused := gate(request):
            return refused
        if known(request) is None:
            return JSONResponse({"code": "not_found", "message": "Resource does not exist"}, status_code=404)
        return paged(request, state["assets"].get(request.path_params["id"], []))

    app = Starlette(routes=[Route("/v1/findings", findings), Route("/v1/findings/{id}", finding),
                            Route("/v1/findings/{id}/assets", assets)])
    app.state.s = state
    return app


def neuro(token: str = "neuro-token") -> Starlette:
    """GET /api/v1/findings?page=&limit= (max 100) -> {success, data, meta: {page, limit, total, pages}};
    GET /api/v1/findings/{id} -> {success, data: finding}. Errors ``{success: false, error: {code, message}}``
    (INVALID_TOKEN, NOT_FOUND, RATE_LIMIT_EXCEEDED with X-RateLimit-*; ``script`` and ``down`` as for
    SecureEndpoint); ``paths`` records every path asked for."""
    state: dict[str, Any] = {"findings": [], "requests": [], "paths": [], "script": [], "down": False}

    def error(code: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"success": False, "error": {"code": code, "message": "x"}}, status_code=status,
                            headers=headers)

    def gate(request: Request, listing: bool = False) -> JSONResponse | None:
        state["paths"].append(request.url.path)
        if request.headers.get("authorization") != f"Bearer {token}":
            return error("INVALID_TOKEN", 401)
        if listing:
            state["requests"].append(dict(request.query_params))
        if state["down"]:
            return error("SERVER_ERROR", 500)
        step = state["script"].pop(0) if state["script"] else None
        if step is not None:
            status, headers = step if isinstance(step, tuple) else (step, {})
            return error("RATE_LIMIT_EXCEEDED" if status == 429 else "SERVER_ERROR", status, headers)
        return None

    async def findings(request: Request) -> JSONResponse:
        if refused := gate(request, listing=True):
            return refused
        page, limit = int(request.query_params.get("page", 1)), int(request.query_params.get("limit", 50))
        if limit > 100:
            return error("VALIDATION_ERROR", 400)
        rows = state["findings"]
        return JSONResponse({"success": True, "data": rows[(page - 1) * limit: page * limit],
                             "meta": {"page": page, "limit": limit, "total": len(rows),
                                      "pages": max(1, -(-len(rows) // limit))}})

    async def finding(request: Request) -> JSONResponse:
        if refused := gate(request):
            return refused
        found = next((f for f in state["findings"] if f["id"] == request.path_params["id"]), None)
        if found is None:
            return error("NOT_FOUND", 404)
        return JSONResponse({"success": True, "data": found},
                            headers={"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "999",
                                     "X-RateLimit-Reset": str(int(time.time()) + 60)})

    app = Starlette(routes=[Route("/api/v1/findings", findings), Route("/api/v1/findings/{id}", finding)])
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
