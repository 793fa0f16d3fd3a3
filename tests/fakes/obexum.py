"""A strict fake of Obexum's REST API (``https://obexum.com/api/v1/``), for the poll tests.

What it enforces, as Obexum's API document describes its API:

- **Auth**: ``Authorization: Bearer obxk_<token>``; tokens are 32 random bytes, base64url, behind the
  ``obxk_`` prefix. Anything else is 401. Each token has scopes; reading engagements, findings and
  reports needs ``read:findings`` (the document's example scope for reading), so a token issued with
  only ``write:scans`` gets 403 ``insufficient_scope`` naming the scope it lacks.
- **Endpoints**: ``GET /api/v1/engagements`` lists the engagements owned by the token's user;
  ``GET /api/v1/engagements/{id}/findings`` (filters ``?status=``, ``?severity=``) lists one
  engagement's findings; ``GET /api/v1/engagements/{id}/report.stix`` is its STIX 2.1 bundle. An
  engagement of another user is 404, as an unknown one.
- **STIX 2.1 bundle**: ``{"type": "bundle", "id": "bundle--<uuid>", "spec_version": "2.1", "objects"}``;
  each finding is an ``x-obexum-finding`` SDO (name, severity, status, rule_id, x_obexum_remediation),
  CVEs are ``vulnerability`` SDOs, ATT&CK techniques ``attack-pattern`` SDOs named by the technique id,
  joined by ``relationship`` objects typed ``exposes`` (finding -> CVE) and ``uses`` (finding -> technique).
- **Rate limit**: 60 requests per minute per token, sliding window: a request that would be the 61st
  within 60 s is 429 with ``Retry-After: 60`` (and not counted). Every answer carries
  ``X-RateLimit-Limit: 60`` and ``X-RateLimit-Remaining: <n>``.

Where the document is silent, this fake decides, and docs/adapters.md says so: lists are
``{"data": [...], "meta": {"page", "per_page", "total"}}``, paged by ``?page=`` (from 1) and
``?per_page=`` (1 to 100, default 25; anything else is 400); errors are ``{"error": {"code", "message"}}``;
each finding carries its ``host`` (the engagement spans hosts), and its STIX object carries it as
``x_obexum_host``.

``app.state.s``: ``tokens`` (token -> {"user", "scopes"}), ``engagements`` (id -> {"id", "name", "owner",
"findings": [...]}), ``log`` (one ``(time, token, path, status)`` per request, on the fake's clock) and
``before`` (an optional coroutine run on each request before it is answered: a test can hold one there).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

LIMIT, WINDOW = 60, 60.0
READ_SCOPE = "read:findings"


def new_token() -> str:
    """A token as Obexum issues them: ``obxk_`` + 32 random bytes, base64url without padding."""
    return "obxk_" + base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).rstrip(b"=").decode()


def stix_id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(uuid.NAMESPACE_URL, f'{kind}/{key}')}"


def bundle(engagement: dict[str, Any]) -> dict[str, Any]:
    """The engagement's findings as the STIX 2.1 export: SDOs plus exposes / uses relationships."""
    objects: list[dict[str, Any]] = []
    seen: set[str] = set()
    for f in engagement["findings"]:
        fid = stix_id("x-obexum-finding", f["id"])
        sdo = {"type": "x-obexum-finding", "spec_version": "2.1", "id": fid, "name": f["name"],
               "severity": f["severity"], "status": f["status"], "rule_id": f["rule_id"],
               "x_obexum_host": f["host"]}
        if "description" in f:
            sdo["description"] = f["description"]
        if "remediation" in f:
            sdo["x_obexum_remediation"] = f["remediation"]
        objects.append(sdo)
        for kind, rel, names in (("vulnerability", "exposes", f.get("cves", [])),
                                 ("attack-pattern", "uses", f.get("mitre", []))):
            for name in names:
                target = stix_id(kind, name)
                if target not in seen:
                    seen.add(target)
                    objects.append({"type": kind, "spec_version": "2.1", "id": target, "name": name})
                objects.append({"type": "relationship", "spec_version": "2.1",
                                "id": stix_id("relationship", fid + target),
                                "relationship_type": rel, "source_ref": fid, "target_ref": target})
    return {"type": "bundle", "id": stix_id("bundle", engagement["id"]), "spec_version": "2.1", "objects": objects}


def obexum(clock: Callable[[], float] = time.monotonic) -> Starlette:
    state: dict[str, Any] = {"tokens": {}, "engagements": {}, "log": [], "before": None}
    recent: dict[str, deque[float]] = defaultdict(deque)  # token -> times of its counted requests

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)

    def answer(request: Request, token: str, response: JSONResponse) -> JSONResponse:
        state["log"].append((clock(), token, request.url.path, response.status_code))
        return response

    def paged(request: Request, rows: list[Any]) -> JSONResponse:
        try:
            page, per_page = int(request.query_params.get("page", 1)), int(request.query_params.get("per_page", 25))
        except ValueError:
            return error(400, "invalid_parameter", "page and per_page must be integers")
        if page < 1 or not 1 <= per_page <= 100:
            return error(400, "invalid_parameter", "page >= 1 and 1 <= per_page <= 100")
        return JSONResponse({"data": rows[(page - 1) * per_page: page * per_page],
                             "meta": {"page": page, "per_page": per_page, "total": len(rows)}})

    async def guarded(request: Request, handler: Callable[[Request, dict[str, Any]], JSONResponse]) -> JSONResponse:
        if state["before"] is not None:
            await state["before"](request)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer obxk_") else ""
        holder = state["tokens"].get(token)
        if holder is None:
            return answer(request, token, error(401, "invalid_token", "missing, malformed, expired or revoked token"))
        now, window = clock(), recent[token]
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= LIMIT:
            return answer(request, token, error(429, "rate_limited", "60 requests per minute per token",
                                                {"Retry-After": "60", "X-RateLimit-Limit": str(LIMIT),
                                                 "X-RateLimit-Remaining": "0"}))
        window.append(now)
        if READ_SCOPE not in holder["scopes"]:
            response = error(403, "insufficient_scope", f"this token lacks the {READ_SCOPE} scope")
        else:
            response = handler(request, holder)
        response.headers["X-RateLimit-Limit"] = str(LIMIT)
        response.headers["X-RateLimit-Remaining"] = str(LIMIT - len(window))
        return answer(request, token, response)

    def owned(holder: dict[str, Any], engagement_id: str) -> dict[str, Any] | None:
        found = state["engagements"].get(engagement_id)
        return found if found is not None and found["owner"] == holder["user"] else None

    def engagements(request: Request, holder: dict[str, Any]) -> JSONResponse:
        mine = [{"id": e["id"], "name": e["name"]} for e in state["engagements"].values()
                if e["owner"] == holder["user"]]
        return paged(request, mine)

    def findings(request: Request, holder: dict[str, Any]) -> JSONResponse:
        engagement = owned(holder, request.path_params["engagement_id"])
        if engagement is None:
            return error(404, "not_found", "no such engagement")
        rows = [f for f in engagement["findings"] if all(
            f.get(key) == request.query_params[key] for key in ("status", "severity") if key in request.query_params)]
        return paged(request, rows)

    def stix(request: Request, holder: dict[str, Any]) -> JSONResponse:
        engagement = owned(holder, request.path_params["engagement_id"])
        if engagement is None:
            return error(404, "not_found", "no such engagement")
        return JSONResponse(bundle(engagement))

    def route(path: str, handler: Callable[[Request, dict[str, Any]], JSONResponse]) -> Route:
        async def endpoint(request: Request) -> JSONResponse:
            return await guarded(request, handler)
        return Route(path, endpoint)

    app = Starlette(routes=[route("/api/v1/engagements", engagements),
                            route("/api/v1/engagements/{engagement_id}/findings", findings),
                            route("/api/v1/engagements/{engagement_id}/report.stix", stix)])
    app.state.s = state
    return app

