"""The console's plumbing: who is looking (the session and its token's row, read again on every page), the
wrappers that guard pages and actions, forms, templates, the audit row of each action, and security headers.

Pages need a session opened with a token that has the ``read`` scope; actions (POST) need ``admin`` and the form's
CSRF token, else 403. A token revoked or expired since the login ends the session at its next page.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub import tokens
from hub.api.anonymous import AnonymousLimiter
from hub.errors import StoreUnavailableError
from hub.ids import iso, parse_iso
from hub.store import sync_state
from hub.store import tokens as token_rows
from hub.store.conn import Conn
from hub.ui.context import ConsoleContext
from hub.ui.session import COOKIE, Session, Sessions

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 65_536
UNAVAILABLE = "The store cannot commit now (see /readyz); try again in a few seconds."
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class Viewer:
    session: Session
    token_id: str
    name: str
    scopes: list[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def actor(self) -> str:  # as the API's audit rows name a token
        return f"token:{self.name} ({self.token_id})"


class Denied(Exception):
    """An answer other than the page: a status and a sentence shown on the error page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


View = Callable[[Request, Viewer], Awaitable[Response]]
Action = Callable[[Request, Viewer, dict[str, str]], Awaitable[Response]]


def secured(app: Any) -> Any:
    """``app`` with the console's security headers on every answer (pages, errors, static files)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await app(scope, receive, send_secured)

    return wrapped


def relative(secs: float) -> str:
    ago = secs >= 0
    secs = abs(secs)
    amount = (f"{int(secs)} s" if secs < 60 else f"{int(secs // 60)} min" if secs < 3600
              else f"{int(secs // 3600)} h" if secs < 86400 else f"{int(secs // 86400)} d")
    return f"{amount} ago" if ago else f"in {amount}"


@jinja2.pass_context
def when(context: Any, value: str | None) -> Markup | str:
    """A stored time as ``2026-11-22 06:23:08 UTC``, with how long ago (or how soon) it is on hover."""
    if not value:
        return "-"
    try:
        ts = parse_iso(value)
    except ValueError:
        return value
    absolute = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(value, relative(context["now"] - ts), absolute)


def permalink(ident: Any) -> str | None:
    """The console page of an ``evt_``, ``fnd_`` or ``dlv_`` id."""
    text = str(ident or "")
    for prefix, page in (("evt_", "events"), ("fnd_", "findings"), ("dlv_", "deliveries")):
        if text.startswith(prefix):
            return f"/ui/{page}/{quote(text, safe='')}"
    return None


def safe_link(url: Any) -> str | None:
    """A vendor's URL as a link only when it is http(s): a ticket URL read back must not become a script."""
    text = str(url or "")
    return text if text.startswith(("https://", "http://")) else None


SESSION_KEY = "console:session-key"  # sync_state's key of the console's key on PostgreSQL, shared by the processes


class Web:
    def __init__(self, ctx: ConsoleContext):
        self.ctx = ctx
        cfg = ctx.settings.console
        key = cfg.session_secret.get_secret_value().encode() if cfg.session_secret else None
        if key is None and ctx.store.dialect == "postgres":  # several processes behind one load balancer: one key
            proposed, now = {"key": secrets.token_hex(32)}, iso(ctx.clock())
            key = ctx.store.write_sync(lambda c: sync_state.shared_value(c, SESSION_KEY, proposed, now))["key"].encode()
        self.sessions = Sessions(key, cfg.session_hours)
        self.anonymous = AnonymousLimiter(ctx.clock)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.filters["when"] = when
        self.env.filters["permalink"] = permalink
        self.env.filters["safe_link"] = safe_link

    @property
    def conn(self) -> Conn:
        return self.ctx.store.conn

    def viewer(self, request: Request) -> Viewer | None:
        now = self.ctx.clock()
        session = self.sessions.read(request.cookies.get(COOKIE), now)
        if session is None or session.token_id is None:
            return None
        row = token_rows.by_id(self.conn, session.token_id)
        if row is None or tokens.refusal(row, now) or not tokens.allows(row["scopes"], "read"):
            return None
        return Viewer(session, row["id"], row["name"], row["scopes"])

    def view(self, handler: View) -> Callable[[Request], Awaitable[Response]]:
        """A page: a session with a read token, else the login form (coming back here after it)."""

        async def endpoint(request: Request) -> Response:
            viewer = self.viewer(request)
            if viewer is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
            try:
                return await handler(request, viewer)
            except Denied as exc:
                return self.error(request, viewer, exc.status, exc.message)
            except StoreUnavailableError:
                return self.error(request, viewer, 503, UNAVAILABLE)

        return endpoint

    def action(self, handler: Action, *, admin: bool = True) -> Callable[[Request], Awaitable[Response]]:
        """A state-changing form: a session (with an admin token unless ``admin`` is False) and its CSRF token."""

        async def endpoint(request: Request) -> Response:
            viewer = self.viewer(request)
            try:
                if viewer is None:
                    raise Denied(403, "Log in first.")
                if admin and not viewer.admin:
                    raise Denied(403, "This token is read-only: it needs the admin scope to change anything.")
                form = await self.form(request)
                if not self.sessions.csrf_ok(viewer.session, form.get("csrf")):
                    raise Denied(403, "The form's CSRF token is missing or wrong; reload the page and try again.")
                return await handler(request, viewer, form)
            except Denied as exc:
                return self.error(request, viewer, exc.status, exc.message)
            except StoreUnavailableError:  # nothing was changed: the change and its audit row are one write
                return self.error(request, viewer, 503, UNAVAILABLE)

        return endpoint

    async def form(self, request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise Denied(413, "The form is too large.")
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def render(self, request: Request, template: str, viewer: Viewer | None, status: int = 200,
               **data: Any) -> HTMLResponse:
        context = {"now": self.ctx.clock(), "viewer": viewer, "path": request.url.path,
                   "csrf": self.sessions.csrf(viewer.session) if viewer else "", **data}
        return HTMLResponse(self.env.get_template(template).render(context), status_code=status)

    def error(self, request: Request, viewer: Viewer | None, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", viewer, status, code=status, message=message)

    async def audit(self, request: Request, actor: str, action: str, target: str | None, result: str,
                    detail: dict[str, Any], change: Callable[[Conn], int] | None = None) -> int:
        """Write the audit row, in the same transaction as ``change`` when there is one (returns the rows it changed;
        none changed, another writer came first, and the row says 409)."""
        client = request.client.host if request.client else None
        stamp = iso(self.ctx.clock())

        def write(conn: Conn) -> int:
            changed = change(conn) if change is not None else 0
            token_rows.audit(conn, stamp, actor, action, target, result if change is None or changed else
                             "409 conflict", detail, client)
            return changed

        return await self.ctx.store.write(write)

    def open_session(self, request: Request, response: Response, session: Session, value: str) -> None:
        """Set the session's cookie: HttpOnly, SameSite=Strict, only under /ui, gone when the session ends."""
        response.set_cookie(COOKIE, value, max_age=max(0, round(session.expires - self.ctx.clock())), path="/ui",
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
