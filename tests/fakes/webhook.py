"""A Standard Webhooks receiver that verifies every request like a real one would, and a scripted
transport in front of it that can answer 503, 429 + Retry-After or time out before letting through."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub import signatures
from hub.errors import VerificationError


def receiver(secret: str) -> Starlette:
    scheme = signatures.build("standard-webhooks", [secret])
    received: list[dict[str, Any]] = []
    ids: list[str] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            scheme.verify({k.lower(): v for k, v in request.headers.items()}, body, time.time())
        except VerificationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        if request.headers["webhook-id"] in ids:  # a receiver deduplicates on webhook-id
            return JSONResponse({"duplicate": True})
        ids.append(request.headers["webhook-id"])
        received.append(orjson.loads(body))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.received = received
    app.state.ids = ids
    return app


class Scripted(httpx.AsyncBaseTransport):
    """Steps: "ok" (pass to the app), "timeout", an int status, or (status, {headers})."""

    def __init__(self, app: Any, script: Iterable[Any] = (), default: Any = "ok"):
        self.inner = httpx.ASGITransport(app=app)
        self.script = list(script)
        self.default = default
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.script.pop(0) if self.script else self.default
        if step == "ok":
            return await self.inner.handle_async_request(request)
        if step == "timeout":
            raise httpx.ReadTimeout("scripted timeout", request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        return httpx.Response(status, headers=headers, json={"error": "scripted failure"})
