"""The console's failure groups and bulk replay (docs/console.md): groups of failed deliveries by target and error
class with the operator's state of each, and bulk replay jobs of a deliveries filter or a group.

A bulk replay is confirmed before it runs: the confirm page counts the set and fixes it (hub/store/failures.py),
the start creates a job row and audits it in one transaction, and a task of this process replays the set page by
page, each page in its own transaction with the job's progress, so intake commits between pages and the job page
shows how far it got. Cancel marks the job: the page being replayed finishes, no other starts.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.errors import HubError
from hub.ids import iso, parse_iso, parse_uint
from hub.store import deliveries as delivery_rows
from hub.store import failures as failure_rows
from hub.store import tokens as token_rows
from hub.store.conn import Conn
from hub.ui.context import ConsoleContext
from hub.ui.lists import MAX_PAGE, PAGE, Filter, _value
from hub.ui.web import Denied, Viewer, Web

log = logging.getLogger("hub.console")
REPLAY_PAGE = 500  # rows per transaction of a bulk replay, as the API's bulk replay
PAUSE_SECS = 0.0  # between pages: 0 still yields the event loop, so the page and intake go on between them


class Failures:
    def __init__(self, ctx: ConsoleContext, web: Web):
        self.ctx, self.web = ctx, web
        targets = tuple(ctx.settings.targets)
        self.group_filters = (Filter("target", "Target", "select", targets),
                              Filter("state", "State", "select", failure_rows.GROUP_STATES))
        self.replay_filters = (Filter("target", "Target", "select", targets),
                               Filter("state", "State", "select", ("dead", "done")),
                               Filter("finding", "Finding id", "text"), Filter("event", "Event id", "text"),
                               Filter("since", "Created from", "time"), Filter("until", "Created before", "time"),
                               Filter("class", "Error class", "text"))
        self.running: dict[int, asyncio.Task[None]] = {}  # job seq -> the task replaying it in this process

    # --- failure groups ----------------------------------------------------------------------------------------

    async def groups(self, request: Request, viewer: Viewer) -> Response:
        values = _parse(self.group_filters, request.query_params)
        shown = [g for g in failure_rows.groups(self.ctx.store.conn)
                 if values["target"] in (None, g["target"]) and values["state"] in (None, g["state"])]
        return self.web.render(request, "failures.html", viewer, filters=self.group_filters,
                               values=request.query_params, groups=shown)

    async def group(self, request: Request, viewer: Viewer) -> Response:
        q = request.query_params
        unknown = sorted(set(q) - {"target", "class", "before", "limit"})
        if unknown:
            raise Denied(400, f"unknown parameter(s): {', '.join(unknown)}")
        target, cls = q.get("target", ""), q.get("class", "")
        before = delivery_rows.parse_id(q["before"]) if "before" in q else None
        limit = parse_uint(q["limit"], MAX_PAGE) if "limit" in q else PAGE
        if ("before" in q and before is None) or not limit:
            raise Denied(400, f"before must be an id like dlv_N and limit a number from 1 to {MAX_PAGE}")
        conn = failure_rows.register(self.ctx.store.conn)
        found = failure_rows.group(conn, target, cls)
        if found is None:
            raise Denied(404, f"No failed deliveries of {target} with the class {cls}.")
        rows = failure_rows.members(conn, target, cls, before, limit + 1)
        key = {"target": target, "class": cls}
        params = {**key, **({"limit": str(limit)} if "limit" in q else {})}
        return self.web.render(
            request, "failure_group.html", viewer, group=found, deliveries=rows[:limit],
            states=failure_rows.GROUP_STATES,
            next_url=f"?{urlencode({**params, 'before': rows[limit - 1]['id']})}" if len(rows) > limit else None,
            first_url=f"?{urlencode(params)}" if before else None,
            replay_url=f"/ui/replay?{urlencode({**key, 'state': 'dead'})}",
            notice=q.get("done") == "state")

    async def set_state(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        target, cls, state = form.get("target", ""), form.get("class", ""), form.get("state", "")
        if state not in failure_rows.GROUP_STATES:
            raise Denied(400, f"state must be one of {', '.join(failure_rows.GROUP_STATES)}")
        found = failure_rows.group(self.ctx.store.conn, target, cls)
        if found is None:
            raise Denied(404, f"No failed deliveries of {target} with the class {cls}.")
        now = iso(self.ctx.clock())
        detail = {"before": {"state": found["state"], "actor": found["actor"], "changed_at": found["changed_at"]},
                  "after": {"state": state, "actor": viewer.actor, "changed_at": now}}
        await self.web.audit(request, viewer.actor, "console.failures.state", f"{target} / {cls}", "ok", detail,
                             lambda conn: failure_rows.set_state(conn, target, cls, state, viewer.actor, now))
        return RedirectResponse(f"/ui/failures/group?{urlencode({'target': target, 'class': cls, 'done': 'state'})}",
                                status_code=303)

    # --- bulk replay -------------------------------------------------------------------------------------------

    async def confirm(self, request: Request, viewer: Viewer) -> Response:
        """The count first: the set a start from this page replays, fixed now (its bounds are in the form)."""
        values = _parse(self.replay_filters, request.query_params)
        values["state"] = values["state"] or "dead"
        conn = failure_rows.register(self.ctx.store.conn)
        max_seq, done_by = failure_rows.bounds(conn), iso(self.ctx.clock())
        return self.web.render(request, "replay_confirm.html", viewer, filters=self.replay_filters,
                               chosen={k: v for k, v in values.items() if v is not None},
                               total=failure_rows.count(conn, values, max_seq, done_by), max_seq=max_seq,
                               done_by=done_by)

    async def start(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        values = _parse(self.replay_filters, {k: v for k, v in form.items() if k not in ("csrf", "max_seq", "done_by")})
        if values["state"] is None:
            raise Denied(400, "state must be dead or done")
        max_seq = parse_uint(form.get("max_seq", ""))
        try:
            done_by = iso(parse_iso(form.get("done_by", "")))
        except (ValueError, OverflowError, OSError):
            done_by = ""
        if max_seq is None or not done_by:
            raise Denied(400, "The confirm page's bounds are missing; open it again.")
        now, client = iso(self.ctx.clock()), request.client.host if request.client else None
        chosen = {k: v for k, v in values.items() if v is not None}

        def write(conn: Conn) -> dict[str, Any]:
            job = failure_rows.create_job(conn, chosen, max_seq, done_by, viewer.actor, now)
            token_rows.audit(conn, now, viewer.actor, "console.deliveries.replay_bulk", job["id"], "ok",
                             {"filter": chosen, "max_seq": max_seq, "done_by": done_by, "total": job["total"]},
                             client)
            return job

        job = await self.ctx.store.write(write)
        self._launch(job["seq"])
        return RedirectResponse(f"/ui/replays/{job['id']}", status_code=303)

    def _launch(self, seq: int) -> None:
        self.running[seq] = task = asyncio.create_task(self._run(seq))
        task.add_done_callback(lambda _: self.running.pop(seq, None))

    async def _run(self, seq: int) -> None:
        try:
            while True:
                state = await self.ctx.store.write(partial(failure_rows.step, seq=seq, page=REPLAY_PAGE,
                                                           now=iso(self.ctx.clock())))
                self.ctx.wake_deliveries()
                if state != "running":
                    return
                await asyncio.sleep(PAUSE_SECS)
        except HubError as exc:  # the store refused a page: the job stays where it got to, shown as interrupted
            log.warning("bulk replay %s stopped: %s", failure_rows.job_id(seq), exc)

    async def job(self, request: Request, viewer: Viewer) -> Response:
        ident = request.path_params["ident"]
        job = failure_rows.get_job(self.ctx.store.conn, ident)
        if job is None:
            raise Denied(404, f"No replay job {ident}.")
        return self.web.render(request, "replay_job.html", viewer, job=job,
                               interrupted=job["state"] == "running" and job["seq"] not in self.running)

    async def resume(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        """Go on with a job the hub stopped in the middle of (a restart, a store that refused a page): from where it
        got to, over the same fixed set. Steps lock the job's row, so a job another process still runs is not
        replayed twice: the two take turns on one cursor."""
        ident = request.path_params["ident"]
        job = failure_rows.get_job(self.ctx.store.conn, ident)
        if job is None:
            raise Denied(404, f"No replay job {ident}.")
        if job["state"] != "running":
            raise Denied(409, f"{ident} has already ended ({job['state']}).")
        if job["seq"] not in self.running:
            detail = {"replayed": job["replayed"], "total": job["total"]}
            await self.web.audit(request, viewer.actor, "console.replays.resume", ident, "ok", detail)
            self._launch(job["seq"])
        return RedirectResponse(f"/ui/replays/{quote(ident, safe='')}", status_code=303)

    async def cancel(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        ident = request.path_params["ident"]
        job = failure_rows.get_job(self.ctx.store.conn, ident)
        if job is None:
            raise Denied(404, f"No replay job {ident}.")
        now = iso(self.ctx.clock())
        detail = {"before": {"state": job["state"], "replayed": job["replayed"]},
                  "after": {"state": "cancelled", "finished_at": now}}
        changed = await self.web.audit(request, viewer.actor, "console.replays.cancel", ident, "ok", detail,
                                       lambda conn: failure_rows.cancel_job(conn, job["seq"], now))
        if not changed:
            raise Denied(409, f"{ident} has already ended ({job['state']}).")
        return RedirectResponse(f"/ui/replays/{quote(ident, safe='')}", status_code=303)


def _parse(filters: tuple[Filter, ...], params: Any) -> dict[str, Any]:
    """The filters' values (None when not given); 400 for an unknown parameter or a value a filter does not take."""
    unknown = sorted(set(params) - {f.name for f in filters})
    try:
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
        return {f.name: _value(f, params[f.name].strip()) if params.get(f.name, "").strip() else None
                for f in filters}
    except ValueError as exc:
        raise Denied(400, str(exc)) from None
