"""The operator console at ``/ui/``: server-rendered pages (Jinja templates in ``templates/``, one stylesheet and
one small script in ``static/``) over the same store queries as the CLI, behind a login with an API token.

``routes(ctx)`` is all the app mounts; docs/console.md describes the pages and the security model.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from hub.ui.context import ConsoleContext
from hub.ui.failures import Failures
from hub.ui.pages import Pages
from hub.ui.tools import Tools
from hub.ui.web import HERE, secured

__all__ = ["ConsoleContext", "routes"]


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    pages = Pages(ctx)
    web = pages.web
    failures = Failures(ctx, web)
    tools = Tools(ctx, web)

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:  # an HTML page, with the headers
        request = Request(scope, receive)
        await web.error(request, web.viewer(request), 404, "No such page.")(scope, receive, send)

    console = Router(routes=[
        Route("/", web.view(pages.home)),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", web.action(pages.logout, admin=False), methods=["POST"]),
        Route("/go", web.view(pages.go)),
        Route("/explain", web.view(pages.explain)),
        *(Route(f"/{name}", web.view(pages.listing_page(name))) for name in pages.lists),
        *(Route(f"/{name}.csv", web.view(pages.listing_csv(name))) for name in pages.lists),
        Route("/events/{ident}", web.view(pages.event)),
        Route("/events/{ident}/reprocess", web.action(pages.reprocess), methods=["POST"]),
        Route("/findings/{ident}", web.view(pages.finding)),
        Route("/deliveries/{ident}", web.view(pages.delivery)),
        Route("/deliveries/{ident}/replay", web.action(pages.replay), methods=["POST"]),
        Route("/failures", web.view(failures.groups)),
        Route("/failures/group", web.view(failures.group)),
        Route("/failures/group/state", web.action(failures.set_state), methods=["POST"]),
        Route("/replay", web.view(failures.confirm)),
        Route("/replay", web.action(failures.start), methods=["POST"]),
        Route("/replays/{ident}", web.view(failures.job)),
        Route("/replays/{ident}/cancel", web.action(failures.cancel), methods=["POST"]),
        Route("/replays/{ident}/resume", web.action(failures.resume), methods=["POST"]),
        Route("/playground", web.view(tools.playground)),
        Route("/playground", web.action(tools.playground_render, admin=False), methods=["POST"]),
        Route("/tokens", web.view(tools.tokens)),
        Route("/tokens", web.action(tools.token_create), methods=["POST"]),
        Route("/tokens/{ident}/revoke", web.action(tools.token_revoke), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static")),
    ], default=not_found)

    async def console_app(scope: Scope, receive: Receive, send: Send) -> None:
        """The router raises a wrong method's 405 for the app's JSON handler, outside ``secured``: answered here
        as an HTML page, so it carries the headers too (with its Allow)."""
        try:
            await console(scope, receive, send)
        except HTTPException as exc:
            if exc.status_code != 405:
                raise
            request = Request(scope, receive)
            response = web.error(request, web.viewer(request), 405, f"This page does not take {request.method}.")
            response.headers.update(exc.headers or {})
            await response(scope, receive, send)

    return [Route("/", root), Mount("/ui", app=secured(console_app))]
