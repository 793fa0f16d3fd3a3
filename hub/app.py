"""``create_app(hub)``: the ASGI application. Routes, middleware and lifespan; no business logic."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.errors import error_json
from hub.receiver import PREFIX
from hub.runtime import Hub

_CODES = {404: "not_found", 405: "method_not_allowed"}


def create_app(hub: Hub) -> Any:
    """The Starlette app, behind a thin dispatcher that sends ``/hooks/...`` straight to the receiver."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        checks = {"store": hub.started and await hub.store.ping(),
                  "scheduler": hub.scheduler_running or not hub.use_scheduler}
        ok = all(checks.values())  # "leader" is information, not a check: a follower is as ready as the leader
        return JSONResponse({"ok": ok, "checks": checks, "leader": hub.leadership.is_leader()},
                            status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        hub.metrics.write_queue.set(hub.store.pending)
        if hub.started:
            await hub.refresh_gauges()
        return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _CODES.get(exc.status_code, "error")
        return Response(error_json(exc.status_code, code, str(exc.detail)), status_code=exc.status_code,
                        media_type="application/json", headers=getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.aclose()

    from hub import api, ui

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
                *(api.routes(hub.api) if hub.config.api.enabled else []),
                *(ui.routes(hub.console) if hub.config.console.enabled else [])],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.hub = hub
    receiver = hub.receiver

    async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await receiver(scope, receive, send)
        else:
            await app(scope, receive, send)

    dispatch.app = app  # type: ignore[attr-defined]
    return dispatch
