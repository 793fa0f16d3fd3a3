"""The console's pages and actions: what each shows is what the CLI answers (``hub events show``, ``hub findings
show``, ``hub deliveries show``, ``hub render``, ``hub explain``), read with a fixed number of queries per page.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from hub import jsonlimits, tokens
from hub.api.anonymous import AnonymousLimiter
from hub.api.base import REFUSED
from hub.errors import HubError, StoreUnavailableError
from hub.explain import explain
from hub.ids import iso
from hub.items import item_from
from hub.store import deliveries as delivery_rows
from hub.store import events as event_rows
from hub.store import findings as finding_rows
from hub.store import tokens as token_rows
from hub.store.conn import Conn
from hub.ui import overview
from hub.ui.context import ConsoleContext
from hub.ui.lists import Listing, Query, listings
from hub.ui.session import COOKIE
from hub.ui.web import UNAVAILABLE, Denied, Viewer, Web, permalink

MAX_BODY_SHOWN = 262_144  # a stored body is shown up to this many characters
_FINGERPRINT = re.compile(r"[0-9a-fA-F]{32,}")
_CVE = re.compile(r"CVE-[0-9]{4}-[0-9]+", re.IGNORECASE)


def pretty(value: Any) -> str:
    """A document as indented JSON (text as it is), cut at MAX_BODY_SHOWN."""
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return text if len(text) <= MAX_BODY_SHOWN else text[:MAX_BODY_SHOWN] + "\n... (cut: see `hub events show`)"


class Pages:
    def __init__(self, ctx: ConsoleContext):
        self.ctx, self.web = ctx, Web(ctx)
        self.lists = listings(ctx.settings)

    # --- logging in and out ------------------------------------------------------------------------------------

    def _next(self, raw: str | None) -> str:
        """Where to go after the login: a console page only (never another site)."""
        return raw if raw and raw.startswith("/ui/") and "\\" not in raw else "/ui/"

    def _login_form(self, request: Request, status: int = 200, message: str | None = None,
                    next_page: str | None = None) -> Response:
        """The form, in a new session of its own: its nonce makes the form's CSRF token."""
        session, value = self.web.sessions.issue(None, self.ctx.clock())
        response = self.web.render(request, "login.html", None, status, message=message,
                                   csrf_login=self.web.sessions.csrf(session),
                                   next=self._next(next_page or request.query_params.get("next")))
        self.web.open_session(request, response, session, value)
        return response

    async def login_page(self, request: Request) -> Response:
        if self.web.viewer(request) is not None:
            return RedirectResponse(self._next(request.query_params.get("next")), status_code=303)
        return self._login_form(request)

    async def login(self, request: Request) -> Response:
        try:
            return await self._login(request)
        except Denied as exc:
            return self.web.error(request, None, exc.status, exc.message)
        except StoreUnavailableError:  # the login is not audited, so it is not made either
            return self.web.error(request, None, 503, UNAVAILABLE)

    async def _login(self, request: Request) -> Response:
        web, now = self.web, self.ctx.clock()
        form = await web.form(request)
        session = web.sessions.read(request.cookies.get(COOKIE), now)
        if session is None or not web.sessions.csrf_ok(session, form.get("csrf")):
            return self._login_form(request, 403, "The login form expired; try again.", form.get("next"))
        row, refused = tokens.check(self.ctx.store.conn, form.get("token", "").strip(), now)
        if row is not None and not tokens.allows(row["scopes"], "read"):
            row, refused = None, "forbidden"
        if row is None:
            wait = web.anonymous.spend(request.client.host if request.client else "-")
            if wait:  # past the address's budget: refused without an audit row (hub/api/anonymous.py)
                self.ctx.metrics.anonymous_limited.inc()
                refusal = web.error(request, None, 429, "Too many failed logins from this address; retry later.")
                refusal.headers["retry-after"] = AnonymousLimiter.retry_after(wait)
                return refusal
            message = REFUSED.get(refused, "the token lacks the read scope")
            await web.audit(request, "anonymous", "console.login", None, f"401 {refused}", {"error": message})
            return self._login_form(request, 401, f"Not logged in: {message}.", form.get("next"))
        viewer = f"token:{row['name']} ({row['id']})"
        def touch(conn: Conn) -> int:  # last_used_at, as an API call sets it
            token_rows.touch(conn, row["id"], iso(now))
            return 1

        await web.audit(request, viewer, "console.login", row["id"], "ok", {"scopes": row["scopes"]}, touch)
        response: Response = RedirectResponse(self._next(form.get("next")), status_code=303)
        web.open_session(request, response, *web.sessions.issue(row["id"], now))  # a new nonce: not the form's
        return response

    async def logout(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        await self.web.audit(request, viewer.actor, "console.logout", viewer.token_id, "ok", {})
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    # --- pages ----------------------------------------------------------------------------------------------------

    async def home(self, request: Request, viewer: Viewer) -> Response:
        return self.web.render(request, "overview.html", viewer, **overview.overview(self.ctx, self.ctx.clock()))

    async def go(self, request: Request, viewer: Viewer) -> Response:
        """The search box: an id opens its page; a fingerprint (32+ hex digits) or a CVE id lists its findings;
        anything else lists the findings of that asset."""
        q = request.query_params.get("q", "").strip()
        if _FINGERPRINT.fullmatch(q):
            return RedirectResponse(f"/ui/findings?{urlencode({'fingerprint': q.lower()})}", status_code=303)
        if _CVE.fullmatch(q):
            return RedirectResponse(f"/ui/findings?{urlencode({'cve': q.upper()})}", status_code=303)
        target = permalink(q) or (f"/ui/findings?{urlencode({'asset': q})}" if q else "/ui/")
        return RedirectResponse(target, status_code=303)

    def _listing(self, name: str, request: Request) -> tuple[Listing, Query]:
        listing = self.lists[name]
        try:
            return listing, listing.parse(request.query_params, self.ctx.clock())
        except ValueError as exc:
            raise Denied(400, str(exc)) from None

    def listing_page(self, name: str) -> Any:
        async def page(request: Request, viewer: Viewer) -> Response:
            listing, query = self._listing(name, request)
            rows, next_before = listing.page(self.ctx.store.conn, query)
            params = {k: v for k, v in request.query_params.items() if k != "before" and v}
            return self.web.render(
                request, "list.html", viewer, listing=listing, rows=rows, values=request.query_params,
                heads=_heads(listing, query, params),
                next_url=f"?{urlencode({**params, 'before': next_before})}" if next_before else None,
                first_url=f"?{urlencode(params)}" if query.sort.after else None,
                csv_url=f"/ui/{name}.csv?{urlencode({k: v for k, v in params.items() if k != 'limit'})}",
                bulk_url=f"/ui/replay?{urlencode({k: v for k, v in params.items() if k not in ('limit', 'sort')})}"
                if name == "deliveries" else None)
        return page

    def listing_csv(self, name: str) -> Any:
        async def export(request: Request, viewer: Viewer) -> Response:
            listing, query = self._listing(name, request)
            return StreamingResponse(listing.csv(self.ctx.store, query), media_type="text/csv; charset=utf-8",
                                     headers={"content-disposition": f'attachment; filename="{name}.csv"'})
        return export

    async def event(self, request: Request, viewer: Viewer) -> Response:
        ident = request.path_params["ident"]
        conn = self.ctx.store.conn
        row = event_rows.get(conn, ident)
        if row is None:
            raise Denied(404, f"No event {ident}.")
        body = jsonlimits.parsed_or_text(row.pop("body"))
        return self.web.render(
            request, "event.html", viewer, event=row, headers=orjson.loads(row["headers"]), body=pretty(body),
            steps=finding_rows.history_of_event(conn, row["id"]),
            deliveries=delivery_rows.listing(conn, event=row["id"], limit=1000),
            notice=request.query_params.get("done") == "reprocess")

    async def finding(self, request: Request, viewer: Viewer) -> Response:
        ident = request.path_params["ident"]
        conn = self.ctx.store.conn
        found = finding_rows.get(conn, ident)
        if found is None:
            raise Denied(404, f"No finding {ident}.")
        sent = delivery_rows.listing(conn, finding=ident, limit=1000)
        by_target: dict[str, list[dict[str, Any]]] = {}
        for r in reversed(sent):  # oldest first, like the history
            by_target.setdefault(r["target"], []).append(r)
        return self.web.render(request, "finding.html", viewer, finding=found,
                               breached=finding_rows.sla_breached_at(conn, ident),
                               history=finding_rows.history(conn, ident), by_target=by_target)

    async def delivery(self, request: Request, viewer: Viewer) -> Response:
        ident = request.path_params["ident"]
        row = delivery_rows.get(self.ctx.store.conn, ident)
        if row is None:
            raise Denied(404, f"No delivery {ident}.")
        requests, problem = self._rendered(row)
        return self.web.render(request, "delivery.html", viewer, delivery=row, requests=requests, problem=problem,
                               notice=request.query_params.get("done") == "replay")

    def _rendered(self, row: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """The request(s) the delivery sends with the current mapping, secret headers masked (as `hub render`)."""
        conn, target = self.ctx.store.conn, row["target"]
        connector = self.ctx.connectors.get(target)
        if connector is None:
            return [], f"the target {target} is not in the config any more"
        [claimed] = delivery_rows.peek(conn, [row["seq"]])
        event = (event_rows.by_ids(conn, [claimed.event_id]).get(claimed.event_id)
                 if claimed.event_id and claimed.snapshot is None else None)
        ref = (finding_rows.ref(conn, claimed.finding_id, target)
               if connector.work_items and claimed.finding_id else None)
        try:
            out = connector.render(item_from(target, claimed, event, ref))
        except (HubError, ValueError) as exc:
            return [], str(exc)
        return [{"method": r.method, "url": r.url, "headers": r.masked_headers(),
                 "body": pretty(jsonlimits.parsed_or_text(r.body))} for r in out], None

    async def explain(self, request: Request, viewer: Viewer) -> Response:
        ident = request.query_params.get("id", "").strip()
        answer = explain(self.ctx.store.conn, self.ctx.settings, ident) if ident else None
        return self.web.render(request, "explain.html", viewer, ident=ident, answer=answer,
                               status=404 if ident and answer is None else 200)

    # --- actions (admin) ---------------------------------------------------------------------------------------

    async def reprocess(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        ident = request.path_params["ident"]
        row = event_rows.get(self.ctx.store.conn, ident)
        if row is None:
            raise Denied(404, f"No event {ident}.")
        detail = {"before": {"state": row["state"], "error": row["error"]},
                  "after": {"state": "pending", "error": None}}
        await self.web.audit(request, viewer.actor, "console.events.reprocess", ident, "ok", detail,
                             lambda conn: event_rows.reprocess(conn, ids=[ident]))
        self.ctx.on_stored()
        return RedirectResponse(f"/ui/events/{quote(ident, safe='')}?done=reprocess", status_code=303)

    async def replay(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        ident = request.path_params["ident"]
        row = delivery_rows.get(self.ctx.store.conn, ident)
        if row is None:
            raise Denied(404, f"No delivery {ident}.")
        if row["state"] not in ("dead", "done"):
            raise Denied(409, f"{ident} is {row['state']}: only a dead or done delivery is replayed.")
        now = iso(self.ctx.clock())
        detail = {"before": {"state": row["state"], "attempts": row["attempts"]},
                  "after": {"state": "pending", "attempts": 0, "next_attempt_at": now}}
        changed = await self.web.audit(request, viewer.actor, "console.deliveries.replay", ident, "ok", detail,
                                       lambda conn: delivery_rows.replay(conn, [row["seq"]], now))
        if not changed:
            raise Denied(409, f"{ident} changed meanwhile; reload it.")
        self.ctx.wake_deliveries()
        return RedirectResponse(f"/ui/deliveries/{quote(ident, safe='')}?done=replay", status_code=303)


def _heads(listing: Listing, query: Query, params: dict[str, str]) -> list[dict[str, Any]]:
    """Each column's title, with a link that sorts the list by it (the filters kept, from the first page) when the
    list sorts by it and its filters allow that order: the reverse of the current order on the sorted column, else
    the column's first order. ``sorted``: ascending or descending on the sorted column (``aria-sort``)."""
    current = query.order.removeprefix("-")
    heads = []
    for c in listing.columns:
        key = listing.sort_key(c.key)
        head: dict[str, Any] = {"column": c, "url": None,
                                "sorted": ("descending" if query.sort.descending else "ascending")
                                if c.key == current else None}
        if key is not None and key.allowed(params):
            descending = not query.sort.descending if c.key == current else key.descending
            head["url"] = f"?{urlencode({**params, 'sort': ('-' if descending else '') + c.key})}"
        heads.append(head)
    return heads
