"""The console's tool pages: the mapping playground (any viewer: it changes nothing) and API tokens (admin only:
list, create with the token shown once, revoke; each change an audit row written with it).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub import jsonlimits, tokens
from hub.ids import iso, parse_uint
from hub.store import tokens as token_rows
from hub.store.conn import Conn
from hub.ui import playground
from hub.ui.context import ConsoleContext
from hub.ui.pages import pretty
from hub.ui.web import Denied, Viewer, Web

MAX_TEMPLATE_CHARS = 60_000  # an edited template (the form itself is capped at MAX_FORM_BYTES)


class Tools:
    def __init__(self, ctx: ConsoleContext, web: Web):
        self.ctx, self.web = ctx, web

    # --- the mapping playground ---------------------------------------------------------------------------------

    async def playground(self, request: Request, viewer: Viewer) -> Response:
        return self._playground(request, viewer, dict(request.query_params), None)

    async def playground_render(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        """Render with the posted template text; nothing is saved (a POST only because a template does not fit in
        a URL)."""
        text = form.get("text", "").replace("\r\n", "\n")
        if len(text) > MAX_TEMPLATE_CHARS:
            raise Denied(413, f"The template is longer than {MAX_TEMPLATE_CHARS} characters.")
        return self._playground(request, viewer, form, text)

    def _playground(self, request: Request, viewer: Viewer, params: dict[str, str], text: str | None) -> Response:
        targets = sorted(self.ctx.connectors)
        target, ident = params.get("target") or (targets[0] if targets else ""), params.get("id", "").strip()
        kind = params.get("kind") or "finding.created"
        if target and target not in self.ctx.connectors:
            raise Denied(400, f"target must be one of {', '.join(targets)}")
        if kind not in playground.KINDS:
            raise Denied(400, f"kind must be one of {', '.join(playground.KINDS)}")
        data: dict[str, Any] = {"targets": targets, "target": target, "ident": ident, "kind": kind,
                                "kinds": playground.KINDS, "edited": text is not None, "missing": False,
                                "rendered": None, "goldens": None, "names": [], "template_name": "", "text": ""}
        connector = self.ctx.connectors.get(target)
        if connector is None:
            return self.web.render(request, "playground.html", viewer, **data)
        mapping = connector.mapping
        names = playground.template_names(mapping)
        name = params.get("template") or (names[0] if names else "")
        if name not in names:
            raise Denied(400, f"template must be one of {', '.join(names)}")
        if text is not None:
            mapping = playground.edited(mapping, name, text)
        data.update(names=names, template_name=name, goldens=playground.check(connector, mapping),
                    text=text if text is not None else playground.source(mapping, name))
        if ident:
            example = playground.subject(self.ctx.store.conn, ident, kind)
            if example is None:
                data.update(missing=True)
                return self.web.render(request, "playground.html", viewer, status=404, **data)
            rendered = playground.render(connector, mapping, example)
            data.update(rendered=rendered, shown=[{**r, "body": pretty(jsonlimits.parsed_or_text(r["body"]))}
                                                  for r in rendered.requests])
        return self.web.render(request, "playground.html", viewer, **data)

    # --- tokens (admin) ---------------------------------------------------------------------------------------------

    def _admin(self, viewer: Viewer) -> None:
        if not viewer.admin:
            raise Denied(403, "Tokens are managed with a token of the admin scope.")

    async def tokens(self, request: Request, viewer: Viewer) -> Response:
        self._admin(viewer)
        return self._tokens(request, viewer)

    def _tokens(self, request: Request, viewer: Viewer, status: int = 200, **data: Any) -> Response:
        rows = token_rows.listing(self.ctx.store.conn)
        for r in rows:
            r["state"] = tokens.refusal(r, self.ctx.clock()) or "active"
        return self.web.render(request, "tokens.html", viewer, status, rows=rows, scopes=tokens.SCOPES,
                               revoked=request.query_params.get("done") == "revoke",
                               **{"created": None, "problem": None, **data})

    async def token_create(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        name = form.get("name", "").strip()
        scopes = [s for s in tokens.SCOPES if form.get(f"scope_{s}") == "1"]
        days_text = form.get("expires_days", "").strip()
        days = parse_uint(days_text, tokens.MAX_EXPIRES_DAYS) if days_text else None
        problem = ("Give the token a name (up to 100 characters)." if not name or len(name) > 100
                   else "Pick at least one scope." if not scopes
                   else f"Expiry must be a number of days from 1 to {tokens.MAX_EXPIRES_DAYS}."
                   if days_text and not days else None)
        if problem:
            return self._tokens(request, viewer, 400, problem=problem)
        now = self.ctx.clock()
        made: dict[str, Any] = {}
        after: dict[str, Any] = {"name": name, "scopes": scopes}

        def create(conn: Conn) -> int:  # runs before the audit row is written: it gets id and expiry
            made["token"], made["row"] = tokens.issue(conn, name, scopes, now, days)
            after.update(id=made["row"]["id"], expires_at=made["row"]["expires_at"])
            return 1

        await self.web.audit(request, viewer.actor, "console.tokens.create", None, "ok", {"after": after}, create)
        return self._tokens(request, viewer, 201, created={"token": made["token"], **made["row"]})

    async def token_revoke(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        ident = request.path_params["ident"]
        row = token_rows.by_id(self.ctx.store.conn, ident)
        if row is None:
            raise Denied(404, f"No token {ident}.")
        if row["revoked_at"]:
            raise Denied(409, f"{ident} is revoked already.")
        stamp = iso(self.ctx.clock())
        detail = {"before": {"name": row["name"], "revoked_at": None}, "after": {"revoked_at": stamp}}
        changed = await self.web.audit(request, viewer.actor, "console.tokens.revoke", ident, "ok", detail,
                                       lambda conn: int(token_rows.revoke(conn, ident, stamp)))
        if not changed:
            raise Denied(409, f"{ident} changed meanwhile; reload the page.")
        return RedirectResponse("/ui/tokens?done=revoke", status_code=303)
