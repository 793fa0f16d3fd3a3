"""``/api/v1/findings``: ingest findings from tools that cannot sign webhooks; list and read findings.

POST takes the Strobes-shaped bulk payload ``{scanner_name, project_id, findings: [...]}`` or one
finding. Every item is checked; valid ones are stored as one event (202 after commit) and processed
like any webhook, invalid ones are reported with their index and reason. Findings are identified by
the tool's id when items carry one, so posting the same batch twice changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.requests import Request

from hub.adapters.strobes import to_finding
from hub.api.base import ApiContext, ApiError, Endpoint, Param, Principal, parse_json, query_int
from hub.errors import AdapterError
from hub.ids import iso, parse_iso
from hub.models import SEVERITIES, Finding
from hub.store import findings as finding_rows
from hub.store.events import NewEvent

MAX_ITEMS = 10_000
ENVELOPE_TEXT = ("scanner_name", "project_id")  # the bulk payload's fields besides `findings`
MAX_PAGE = 1_000_000


async def ingest(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    body = await request.body()
    if len(body) > ctx.config.max_body_bytes:
        raise ApiError(413, "payload_too_large", f"body is larger than {ctx.config.max_body_bytes} bytes")
    doc = parse_json(body)
    if isinstance(doc, dict) and "findings" in doc:
        items, envelope = doc["findings"], {k: v for k, v in doc.items() if k != "findings"}
        if not isinstance(items, list):
            raise ApiError(400, "invalid_payload", "findings must be a list")
        wrong = [k for k in ENVELOPE_TEXT if k in envelope and not isinstance(envelope[k], str)]
        if wrong:  # as the OpenAPI document says: the envelope's fields are text (schemathesis holds us to it)
            raise ApiError(400, "invalid_payload", f"{', '.join(wrong)} must be a string",
                           errors=[{"code": "invalid_payload", "message": f"{k} must be a string"} for k in wrong])
    elif isinstance(doc, dict):
        items, envelope = [doc], {}
    else:
        raise ApiError(400, "invalid_payload", "send {scanner_name, project_id, findings: [...]} or one finding object")
    if len(items) > MAX_ITEMS:
        raise ApiError(413, "too_many_items", f"at most {MAX_ITEMS} findings per request")
    valid, errors = [], []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise AdapterError("expected a finding object")
            to_finding(item, f"findings[{index}]", envelope.get("scanner_name"))
            valid.append(item)
        except AdapterError as exc:
            errors.append({"index": index, "code": "invalid_finding", "message": str(exc)})
    detail = {"received": len(items), "accepted": len(valid), "rejected": len(errors)}
    if not valid:
        raise ApiError(422, "no_valid_findings", "no finding in the request is valid", errors=errors)
    payload = orjson.dumps({**envelope, "findings": valid})
    key = request.headers.get("idempotency-key") or hashlib.sha256(payload).hexdigest()
    now = ctx.clock()
    event = NewEvent(ctx.config.source, iso(now), key, "application/json",
                     orjson.dumps({"x-hub-token": principal.name}).decode(), payload, "api-token")
    event_id, duplicate = await ctx.store.insert_event(event)
    if not duplicate:
        ctx.on_stored()
    result = {"ok": True, "status": "duplicate" if duplicate else "accepted", "event": event_id, **detail,
              "errors": errors}
    return (200 if duplicate else 202), result, {**detail, "event": event_id}


def _finding_json(f: Finding) -> dict[str, Any]:
    return f.model_dump(mode="json", exclude={"raw"})


async def listing(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    q = request.query_params
    page = query_int(request, "page", 1, 1, MAX_PAGE)
    limit = query_int(request, "limit", 50, 1, 100)
    status = q.get("status")
    if status is not None and status.lower() not in ("open", "resolved", "dismissed"):
        raise ApiError(400, "invalid_parameter", "status must be open, resolved or dismissed")
    severity = q.get("severity")
    if severity is not None and severity.lower() not in SEVERITIES:
        raise ApiError(400, "invalid_parameter", f"severity must be one of {', '.join(SEVERITIES)}")
    created_after = q.get("created_after")
    if created_after is not None:
        try:
            created_after = iso(parse_iso(created_after))
        except ValueError:
            raise ApiError(400, "invalid_parameter", "created_after must be an ISO 8601 date or time") from None
    found, total = finding_rows.search(
        ctx.store.conn, status=status.lower() if status else None, severity=severity.lower() if severity else None,
        source=q.get("source"), asset_tag=q.get("asset_tag"), created_after=created_after, text=q.get("search"),
        limit=limit, offset=(page - 1) * limit)
    meta = {"page": page, "limit": limit, "total": total, "pages": (total + limit - 1) // limit}
    refs = finding_rows.external_refs_of(ctx.store.conn, [f.id for f in found])
    data = [_finding_json(f.model_copy(update={"external_refs": refs.get(f.id, {})})) for f in found]
    return 200, {"ok": True, "data": data, "meta": meta}, {"filters": dict(q)}


async def one(ctx: ApiContext, request: Request, principal: Principal) -> tuple[int, Any, dict[str, Any]]:
    finding_id = request.path_params["finding_id"]
    found = finding_rows.get(ctx.store.conn, finding_id)
    if found is None:
        raise ApiError(404, "not_found", f"no finding {finding_id}")
    data = {**found.model_dump(mode="json"), "history": finding_rows.history(ctx.store.conn, finding_id)}
    return 200, {"ok": True, "data": data}, {}


FILTERS = [
    Param("status", {"type": "string", "enum": ["open", "resolved", "dismissed"]}, "Lifecycle status."),
    Param("severity", {"type": "string", "enum": list(SEVERITIES)}, "Normalized severity."),
    Param("source", {"type": "string"}, "Source name."),
    Param("asset_tag", {"type": "string"}, "A tag the finding's asset carries."),
    Param("created_after", {"type": "string", "format": "date-time"}, "First seen at or after this time."),
    Param("search", {"type": "string"}, "Text in the title, description, CVEs or asset."),
    Param("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}, "Page number."),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}, "Items per page."),
]
FINDING_SCHEMA = Finding.model_json_schema(ref_template="#/components/schemas/{model}")
ITEM_SCHEMA = {"type": "object", "required": ["title"], "description": "One finding: title, severity, description, "
               "asset_identifier, file, cve, cwe, id, remediation, ...; each is checked (422 when none passes)",
               "properties": {"title": {"type": "string", "minLength": 1}}}
INGEST_SCHEMA = {
    "oneOf": [
        {"type": "object", "required": ["findings"], "properties": {
            "scanner_name": {"type": "string"}, "project_id": {"type": "string"},
            "findings": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": ITEM_SCHEMA}}},
        {"allOf": [ITEM_SCHEMA, {"not": {"required": ["findings"]}}]},
    ]}

INGEST_ERRORS = {413: f"Body larger than api.max_body_bytes, or more than {MAX_ITEMS} findings",
                 422: "No finding in the request is valid (each is reported by index in errors)"}

ENDPOINTS = [
    Endpoint("POST", "/api/v1/findings", "findings.ingest", "ingest",
             "Ingest findings (Strobes bulk shape or one finding); invalid items are reported by index.", ingest,
             body=INGEST_SCHEMA, status=202, errors=INGEST_ERRORS,
             also={200: "A duplicate: the same body (or Idempotency-Key) was stored before"},
             response={"type": "object", "properties": {
                 "ok": {"type": "boolean"}, "status": {"type": "string", "enum": ["accepted", "duplicate"]},
                 "event": {"type": "string"}, "received": {"type": "integer"}, "accepted": {"type": "integer"},
                 "rejected": {"type": "integer"}, "errors": {"type": "array", "items": {"type": "object"}}}}),
    Endpoint("GET", "/api/v1/findings", "findings.list", "read", "List findings with filters and pagination.",
             listing, params=FILTERS, response={"type": "object", "properties": {
                 "data": {"type": "array", "items": {"$ref": "#/components/schemas/Finding"}},
                 "meta": {"type": "object", "properties": {k: {"type": "integer"} for k in
                                                           ("page", "limit", "total", "pages")}}}}),
    Endpoint("GET", "/api/v1/findings/{finding_id}", "findings.get", "read",
             "One finding with its history and external refs (tickets).", one,
             params=[Param("finding_id", {"type": "string", "pattern": "^fnd_[0-9A-Z]{26}$"},
                           "Finding id (fnd_ and 26 base32 characters).", "path")], errors={404: "No such finding"},
             response={"type": "object", "properties": {"data": {"$ref": "#/components/schemas/Finding"}}}),
]
