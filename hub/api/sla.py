"""``GET /api/v1/sla``: the SLA report (hub/store/sla.py says what each number means) for a period and filters.

The report reads every open finding and those resolved in the period: it runs on its own connection in a
worker thread (``Store.read``), not on the event loop that receives webhooks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.requests import Request

from hub.api.base import ApiContext, ApiError, Endpoint, Param, Principal
from hub.ids import iso
from hub.sla import DEFAULT_DAYS, PeriodError, period
from hub.store import sla as sla_rows


async def report(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    q = request.query_params
    now = ctx.clock()
    try:
        since, until = period(q.get("since"), q.get("until"), now)
    except PeriodError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    data = await ctx.store.read(partial(sla_rows.report, since=since, until=until, now=iso(now),
                                        source=q.get("source"), tag=q.get("tag")))
    return 200, {"ok": True, "data": data}, {"filters": dict(q)}


_SECS = {"type": ["number", "null"], "description": "Seconds; null when nothing was resolved in the period."}
ROW = {"type": "object", "required": [*sla_rows.COUNTS, "mean_time_to_resolve_secs", "median_time_to_resolve_secs"],
       "properties": {
           "open_within_sla": {"type": "integer", "description": "Open, due date not passed yet."},
           "open_breached": {"type": "integer", "description": "Open, due date passed."},
           "open_no_sla": {"type": "integer", "description": "Open, no due date (no SLA for the severity)."},
           "resolved_within_sla": {"type": "integer", "description": "Resolved in the period by the due date."},
           "resolved_late": {"type": "integer", "description": "Resolved in the period after the due date."},
           "resolved_no_sla": {"type": "integer", "description": "Resolved in the period, no due date."},
           "mean_time_to_resolve_secs": _SECS, "median_time_to_resolve_secs": _SECS}}


def _keyed(key: str) -> dict[str, Any]:
    return {"type": "array", "items": {"allOf": [ROW, {"type": "object", "required": [key],
                                                         "properties": {key: {"type": "string"}}}]}}


REPORT_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "data": {
    "type": "object", "required": ["period", "as_of", "filters", "total", "by_severity", "by_source", "by_tag"],
    "properties": {
        "period": {"type": "object", "properties": {"since": {"type": "string", "format": "date-time"},
                                                    "until": {"type": "string", "format": "date-time"}}},
        "as_of": {"type": "string", "format": "date-time", "description": "When the open findings were counted."},
        "filters": {"type": "object", "properties": {"source": {"type": ["string", "null"]},
                                                     "tag": {"type": ["string", "null"]}}},
        "total": ROW, "by_severity": _keyed("severity"), "by_source": _keyed("source"), "by_tag": _keyed("tag")}}}}

ENDPOINTS = [
    Endpoint("GET", "/api/v1/sla", "sla.report", "read",
             "SLA report: open within SLA and breached (now), resolved in the period within and after SLA, mean and "
             "median time to resolve; per severity, source and asset tag.", report,
             params=[Param("since", {"type": "string", "format": "date-time"},
                           f"Start of the period (resolved at or after); default {DEFAULT_DAYS} days before until."),
                     Param("until", {"type": "string", "format": "date-time"},
                           "End of the period (resolved before); default now."),
                     Param("source", {"type": "string"}, "Only findings of this source."),
                     Param("tag", {"type": "string"}, "Only findings whose asset carries this tag.")],
             response=REPORT_SCHEMA, errors={400: "since or until is not an ISO 8601 time, or since is not before "
                                                   "until; or an unknown parameter"}),
]
